import importlib, time, uuid, statistics
import psycopg
from psycopg.types.json import Jsonb

def test_bench(migrated_database_url: str) -> None:
    v7 = importlib.import_module("jarvis.db.migrations.versions.0007_cheaper_triggers_and_a_set_based_sealer")
    v8 = importlib.import_module("jarvis.db.migrations.versions.0008_sealer_vouches_only_for_what_it_should")
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        cyc = uuid.uuid4()
        conn.execute("SELECT public.jarvis_append_planning_cycles(%s, NULL, 'bench', 'started', %s)", (cyc, Jsonb(["g"])))
        small = Jsonb({"to": "landlord", "usd": 1500.25, "memo": "x" * 200})
        big = Jsonb({"blob": "y" * 50_000})
        def run(n, value):
            with conn.transaction(force_rollback=True):
                t = time.perf_counter()
                for _ in range(n):
                    conn.execute("SELECT public.jarvis_append_tool_calls(%s, NULL, %s, 'transfer', 'started', %s)", (uuid.uuid4(), cyc, value))
                return (time.perf_counter() - t) / n * 1e6
        res = {"0007": {"small": [], "big": []}, "0008": {"small": [], "big": []}}
        for r in range(8):
            order = [("0007", v7.BEFORE_INSERT), ("0008", v8.before_insert())]
            for name, defs in (order if r % 2 else order[::-1]):
                for sql in defs.values():
                    conn.execute(sql)
                res[name]["small"].append(run(1000, small))
                res[name]["big"].append(run(200, big))
        for name in res:
            print("BENCH", name, {k: round(statistics.median(v), 1) for k, v in res[name].items()})
