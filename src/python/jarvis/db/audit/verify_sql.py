"""The verifier's bulk checks, computed inside PostgreSQL and returned only where something is wrong.

Reading a million rows into Python to hash them there costs far more than the hashing: instead
each row's canonical encoding (encoding 2: the row's JSON with keys ordered by length then
bytes, top-level nulls left out, `"$table"` added) is rendered by an expression built here, in
the verifier's code, from the row's own columns, hashed with PostgreSQL's `sha256` and compared
with the link's `row_hash` in the same query. Chain links are recomputed the same way, each from
its stored predecessor. Only rows and links that do not match come back.

That trusts PostgreSQL's built-in functions, operators and types, which a superuser can redefine
in place (`CREATE OR REPLACE FUNCTION pg_catalog.sha256 ...` keeps the built-in's OID, and the
planner inlines an SQL body), re-point (`pg_operator.oprcode`; `pg_type.typoutput`, which
`to_json` and `concat` print values with) or rename. `builtin_problems` therefore checks, in
Python and without trusting any operator, every function, operator and type these queries use:
each must still be PostgreSQL's own compiled function at the OID PostgreSQL compiled it under.
Built-ins are dispatched by OID to compiled code, so an edited `prosrc` of an internal function
never runs. What no check inside the server can rule out is native code a superuser loaded into
it (a C function, a preload library): it can make any answer lie, this check's too. Such code
is named where the catalog shows it; the defence against it is outside PostgreSQL (signed
checkpoints, and a bundle exported earlier and verified offline).

A table whose columns are not the ones the models declare (a column added, dropped or retyped)
is rendered with `public.jarvis_canonical(to_jsonb(row))` instead: every column, whatever its type,
exactly as the sealer rendered it (slower, and the catalog check compares that function's body).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import postgresql

from jarvis.db.base import Base

INTERNAL_LANGUAGE = 12
"""pg_language's OID of `internal`: PostgreSQL's compiled functions (fixed since forever)."""
C_LANGUAGE = 13
SQL_LANGUAGE = 14
FIRST_USER_OID = 16384
"""Objects PostgreSQL creates have OIDs below this; anything a user creates, at or above."""
PG_CATALOG_NAMESPACE = 11
"""pg_namespace's OID of pg_catalog (fixed)."""

TYPE_OIDS = {"uuid": 2950, "text": 25, "jsonb": 3802, "integer": 23, "bigint": 20, "timestamp with time zone": 1184}
"""The built-in types of the audit columns, by their fixed OIDs (compared without calling any function)."""

RELIED_ON_FUNCTIONS = {
    "pg_catalog.sha256(bytea)": 3420,
    "pg_catalog.convert_to(text, name)": 1717,
    "pg_catalog.to_json(anyelement)": 3176,
    "pg_catalog.jsonb_typeof(jsonb)": 3210,
    'pg_catalog.concat("any")': 3058,
    "pg_catalog.substr(text, integer)": 883,
    "pg_catalog.date_part(text, timestamp with time zone)": 1171,
    "pg_catalog.width_bucket(anycompatible, anycompatiblearray)": 3218,
    "pg_catalog.lag(anycompatible, integer, anycompatible)": 3108,
    "pg_catalog.int8send(bigint)": 2409,
    "pg_catalog.uuid_send(uuid)": 2962,
    "pg_catalog.lpad(text, integer, text)": 873,
    "pg_catalog.to_hex(bigint)": 2090,
    "pg_catalog.count()": 2803,
    "pg_catalog.pg_export_snapshot()": 3809,
    "pg_catalog.pg_backend_pid()": 2026,
    "pg_catalog.pg_get_triggerdef(oid)": 1662,
    "pg_catalog.pg_get_constraintdef(oid)": 1387,
    "pg_catalog.pg_get_indexdef(oid)": 1643,
    "pg_catalog.pg_get_userbyid(oid)": 1642,
    "pg_catalog.aclexplode(aclitem[])": 1689,
    'pg_catalog.acldefault("char", oid)': 3943,
    "pg_catalog.pg_show_all_settings()": 2084,
}
"""Every function verify's queries call (these below, the catalog check's, and `public.jarvis_serial_uuid`'s
body), with the OID PostgreSQL compiled it under: a name resolves to that OID unless someone renamed or
shadowed one. (`pg_settings`, which the native-code check reads, is a view over `pg_show_all_settings`.)"""

FUNCTION_KINDS = {2803: "a", 3108: "w"}
"""pg_proc.prokind of the relied-on functions that are not plain functions (count is an aggregate, lag a
window function): a plain built-in turned into an aggregate would run a pg_aggregate row's functions."""

RELIED_ON_AGGREGATES: dict[int, tuple[Any, ...]] = {
    # aggkind, aggnumdirectargs, aggtransfn, aggfinalfn, aggcombinefn, aggserialfn, aggdeserialfn,
    # aggmtransfn, aggminvtransfn, aggmfinalfn, aggfinalextra, aggmfinalextra, aggfinalmodify,
    # aggmfinalmodify, aggsortop, aggtranstype, aggtransspace, aggmtranstype, aggmtransspace,
    # agginitval, aggminitval: count(*) as PostgreSQL 15 and 16 compile it (int8inc, int8pl, int8dec).
    2803: ("n", 0, 1219, 0, 463, 0, 0, 1219, 3546, 0, False, False, "r", "r", 0, 20, 0, 20, 0, "0", "0"),
}
"""Every aggregate verify's queries call, with its whole pg_aggregate row: one `UPDATE pg_aggregate SET
aggtransfn` makes `count(*)` run a function of the superuser's own (issue 22, B1) while pg_proc is untouched."""

_AGGREGATE_FUNCTIONS = (2, 3, 4, 5, 6, 7, 8, 9)
"""Which of those columns name functions (each must be 0 or PostgreSQL's compiled function)."""

RELIED_ON_OPERATORS = {
    ("=", "bytea", "bytea"): ("byteaeq", 1948),
    ("<>", "bytea", "bytea"): ("byteane", 1953),
    ("||", "bytea", "bytea"): ("byteacat", 2011),
    ("||", "text", "text"): ("textcat", 1258),
    ("=", "text", "text"): ("texteq", 67),
    ("<>", "text", "text"): ("textne", 157),
    ("=", "uuid", "uuid"): ("uuid_eq", 2956),
    ("=", "bigint", "bigint"): ("int8eq", 467),
    ("<>", "bigint", "bigint"): ("int8ne", 468),
    (">", "bigint", "bigint"): ("int8gt", 470),
    ("<=", "bigint", "bigint"): ("int8le", 471),
    ("+", "bigint", "bigint"): ("int8pl", 463),
    ("-", "bigint", "bigint"): ("int8mi", 464),
    ("<>", "smallint", "smallint"): ("int2ne", 145),
    (">", "smallint", "smallint"): ("int2gt", 146),
    ("=", "oid", "oid"): ("oideq", 184),
    ("<>", "oid", "oid"): ("oidne", 185),
    (">=", "oid", "oid"): ("oidge", 1639),
    ("=", "name", "name"): ("nameeq", 62),
    ("=", "name", "text"): ("nameeqtext", 240),
    ("+", "integer", "integer"): ("int4pl", 177),
    ("<=", "integer", "integer"): ("int4le", 149),
    (">=", "integer", "integer"): ("int4ge", 150),
    ("+", "double precision", "double precision"): ("float8pl", 218),
    ("<", "double precision", "double precision"): ("float8lt", 295),
    (">", "double precision", "double precision"): ("float8gt", 297),
    ("<>", "double precision", "double precision"): ("float8ne", 294),
    (">=", "timestamp with time zone", "timestamp with time zone"): ("timestamptz_ge", 1156),
    ("<", "timestamp with time zone", "timestamp with time zone"): ("timestamptz_lt", 1154),
}
"""Every operator the queries below use, with the built-in function (name, compiled OID) that must implement it."""


OPERATOR_ROWS = frozenset(
    """
1955:bmh:16:1955:1956:101:105 1956:b--:16:1956:1955:102:106 2018:b--:17:0:0:0:0 654:b--:25:0:0:0:0
98:bmh:16:98:531:101:105 531:b--:16:531:98:102:106 2972:bmh:16:2972:2973:101:105 410:bmh:16:410:411:101:105
411:b--:16:411:410:102:106 413:b--:16:412:414:104:108 414:b--:16:415:413:336:386 684:b--:20:684:0:0:0
685:b--:20:0:0:0:0 519:b--:16:519:94:102:106 520:b--:16:95:522:104:108 607:bmh:16:607:608:101:105
608:b--:16:608:607:102:106 612:b--:16:611:609:337:398 93:bmh:16:93:643:101:105 254:bmh:16:260:259:101:105
551:b--:23:551:0:0:0 523:b--:16:525:521:336:386 525:b--:16:523:97:337:398 672:b--:16:674:675:103:107
674:b--:16:672:673:104:108 671:b--:16:671:670:102:106 1325:b--:16:1323:1322:337:398
1322:b--:16:1324:1325:103:107 591:b--:701:591:0:0:0
""".split()
)
"""The rest of each relied-on operator's pg_operator row as PostgreSQL 15 and 16 compile it (identical):
`OID:KIND MERGE HASH:RESULT:COMMUTATOR:NEGATOR:RESTRICT:JOIN` (m/h: oprcanmerge/oprcanhash, - for false).
`oprcanhash`/`oprcanmerge` decide whether a join can be planned at all (a FULL JOIN needs one of them), the
commutator and negator which operator the planner swaps in, the estimators which function it calls."""

OPERATOR_FAMILIES = {
    1976: (403, "integer_ops"),
    1977: (405, "integer_ops"),
    1994: (403, "text_ops"),
    1995: (405, "text_ops"),
    2968: (403, "uuid_ops"),
    2969: (405, "uuid_ops"),
}
"""The btree (403) and hash (405) operator families of the types verify joins, groups and sorts on (uuid row
ids, text table names, bigint positions): a join, grouping or sort runs their support functions."""

BUILTIN_AMOP = frozenset(
    """
1976:20>20:1s:412:403:0 1976:20>20:2s:414:403:0 1976:20>20:3s:410:403:0 1976:20>20:4s:415:403:0
1976:20>20:5s:413:403:0 1976:20>21:1s:1870:403:0 1976:20>21:2s:1872:403:0 1976:20>21:3s:1868:403:0
1976:20>21:4s:1873:403:0 1976:20>21:5s:1871:403:0 1976:20>23:1s:418:403:0 1976:20>23:2s:420:403:0
1976:20>23:3s:416:403:0 1976:20>23:4s:430:403:0 1976:20>23:5s:419:403:0 1976:21>20:1s:1864:403:0
1976:21>20:2s:1866:403:0 1976:21>20:3s:1862:403:0 1976:21>20:4s:1867:403:0 1976:21>20:5s:1865:403:0
1976:21>21:1s:95:403:0 1976:21>21:2s:522:403:0 1976:21>21:3s:94:403:0 1976:21>21:4s:524:403:0
1976:21>21:5s:520:403:0 1976:21>23:1s:534:403:0 1976:21>23:2s:540:403:0 1976:21>23:3s:532:403:0
1976:21>23:4s:542:403:0 1976:21>23:5s:536:403:0 1976:23>20:1s:37:403:0 1976:23>20:2s:80:403:0
1976:23>20:3s:15:403:0 1976:23>20:4s:82:403:0 1976:23>20:5s:76:403:0 1976:23>21:1s:535:403:0
1976:23>21:2s:541:403:0 1976:23>21:3s:533:403:0 1976:23>21:4s:543:403:0 1976:23>21:5s:537:403:0
1976:23>23:1s:97:403:0 1976:23>23:2s:523:403:0 1976:23>23:3s:96:403:0 1976:23>23:4s:525:403:0
1976:23>23:5s:521:403:0 1977:20>20:1s:410:405:0 1977:20>21:1s:1868:405:0 1977:20>23:1s:416:405:0
1977:21>20:1s:1862:405:0 1977:21>21:1s:94:405:0 1977:21>23:1s:532:405:0 1977:23>20:1s:15:405:0
1977:23>21:1s:533:405:0 1977:23>23:1s:96:405:0 1994:19>19:1s:660:403:0 1994:19>19:2s:661:403:0
1994:19>19:3s:93:403:0 1994:19>19:4s:663:403:0 1994:19>19:5s:662:403:0 1994:19>25:1s:255:403:0
1994:19>25:2s:256:403:0 1994:19>25:3s:254:403:0 1994:19>25:4s:257:403:0 1994:19>25:5s:258:403:0
1994:25>19:1s:261:403:0 1994:25>19:2s:262:403:0 1994:25>19:3s:260:403:0 1994:25>19:4s:263:403:0
1994:25>19:5s:264:403:0 1994:25>25:1s:664:403:0 1994:25>25:2s:665:403:0 1994:25>25:3s:98:403:0
1994:25>25:4s:667:403:0 1994:25>25:5s:666:403:0 1995:19>19:1s:93:405:0 1995:19>25:1s:254:405:0
1995:25>19:1s:260:405:0 1995:25>25:1s:98:405:0 2968:2950>2950:1s:2974:403:0 2968:2950>2950:2s:2976:403:0
2968:2950>2950:3s:2972:403:0 2968:2950>2950:4s:2977:403:0 2968:2950>2950:5s:2975:403:0
2969:2950>2950:1s:2972:405:0
""".split()
)
"""pg_amop of those families as PostgreSQL 15 and 16 compile them: `FAMILY:LEFT>RIGHT:STRATEGY PURPOSE:OPERATOR:
METHOD:SORTFAMILY`."""

BUILTIN_AMPROC = frozenset(
    """
1976:20>20:1:842 1976:20>20:2:3131 1976:20>20:3:4126 1976:20>20:4:5051 1976:20>21:1:2193 1976:20>23:1:2189
1976:21>20:1:2192 1976:21>20:3:4130 1976:21>21:1:350 1976:21>21:2:3129 1976:21>21:3:4132 1976:21>21:4:5051
1976:21>23:1:2190 1976:21>23:3:4131 1976:23>20:1:2188 1976:23>20:3:4127 1976:23>21:1:2191 1976:23>21:3:4129
1976:23>23:1:351 1976:23>23:2:3130 1976:23>23:3:4128 1976:23>23:4:5051 1977:20>20:1:949 1977:20>20:2:442
1977:21>21:1:449 1977:21>21:2:441 1977:23>23:1:450 1977:23>23:2:425 1994:19>19:1:359 1994:19>19:2:3135
1994:19>19:4:5050 1994:19>25:1:246 1994:25>19:1:253 1994:25>25:1:360 1994:25>25:2:3255 1994:25>25:4:5050
1995:19>19:1:455 1995:19>19:2:447 1995:25>25:1:400 1995:25>25:2:448 2968:2950>2950:1:2960 2968:2950>2950:2:3300
2968:2950>2950:4:5051 2969:2950>2950:1:2963 2969:2950>2950:2:3412
""".split()
)
"""pg_amproc of those families as PostgreSQL 15 and 16 compile them: `FAMILY:LEFT>RIGHT:NUMBER:FUNCTION`."""

_ARRAY_IO = ((750, "array_in"), (751, "array_out"), (2400, "array_recv"), (2401, "array_send"))

RELIED_ON_TYPES: dict[int, tuple[str, tuple[tuple[int, str], ...]]] = {
    16: ("boolean", ((1242, "boolin"), (1243, "boolout"), (2436, "boolrecv"), (2437, "boolsend"))),
    17: ("bytea", ((1244, "byteain"), (31, "byteaout"), (2412, "bytearecv"), (2413, "byteasend"))),
    18: ('"char"', ((1245, "charin"), (33, "charout"), (2434, "charrecv"), (2435, "charsend"))),
    19: ("name", ((34, "namein"), (35, "nameout"), (2422, "namerecv"), (2423, "namesend"))),
    20: ("bigint", ((460, "int8in"), (461, "int8out"), (2408, "int8recv"), (2409, "int8send"))),
    21: ("smallint", ((38, "int2in"), (39, "int2out"), (2404, "int2recv"), (2405, "int2send"))),
    23: ("integer", ((42, "int4in"), (43, "int4out"), (2406, "int4recv"), (2407, "int4send"))),
    24: ("regproc", ((44, "regprocin"), (45, "regprocout"), (2444, "regprocrecv"), (2445, "regprocsend"))),
    25: ("text", ((46, "textin"), (47, "textout"), (2414, "textrecv"), (2415, "textsend"))),
    26: ("oid", ((1798, "oidin"), (1799, "oidout"), (2418, "oidrecv"), (2419, "oidsend"))),
    114: ("json", ((321, "json_in"), (322, "json_out"), (323, "json_recv"), (324, "json_send"))),
    700: ("real", ((200, "float4in"), (201, "float4out"), (2424, "float4recv"), (2425, "float4send"))),
    701: ("double precision", ((214, "float8in"), (215, "float8out"), (2426, "float8recv"), (2427, "float8send"))),
    705: ("unknown", ((109, "unknownin"), (110, "unknownout"), (2416, "unknownrecv"), (2417, "unknownsend"))),
    1009: ("text[]", _ARRAY_IO),
    1016: ("bigint[]", _ARRAY_IO),
    1022: ("double precision[]", _ARRAY_IO),
    1028: ("oid[]", _ARRAY_IO),
    1033: ("aclitem", ((1031, "aclitemin"), (1032, "aclitemout"), (0, "none"), (0, "none"))),
    1034: ("aclitem[]", _ARRAY_IO),
    1043: (
        "character varying",
        ((1046, "varcharin"), (1047, "varcharout"), (2432, "varcharrecv"), (2433, "varcharsend")),
    ),
    1114: (
        "timestamp without time zone",
        ((1312, "timestamp_in"), (1313, "timestamp_out"), (2474, "timestamp_recv"), (2475, "timestamp_send")),
    ),
    1184: (
        "timestamp with time zone",
        ((1150, "timestamptz_in"), (1151, "timestamptz_out"), (2476, "timestamptz_recv"), (2477, "timestamptz_send")),
    ),
    1700: ("numeric", ((1701, "numeric_in"), (1702, "numeric_out"), (2460, "numeric_recv"), (2461, "numeric_send"))),
    2202: (
        "regprocedure",
        ((2212, "regprocedurein"), (2213, "regprocedureout"), (2446, "regprocedurerecv"), (2447, "regproceduresend")),
    ),
    2204: (
        "regoperator",
        ((2216, "regoperatorin"), (2217, "regoperatorout"), (2450, "regoperatorrecv"), (2451, "regoperatorsend")),
    ),
    2205: ("regclass", ((2218, "regclassin"), (2219, "regclassout"), (2452, "regclassrecv"), (2453, "regclasssend"))),
    2206: ("regtype", ((2220, "regtypein"), (2221, "regtypeout"), (2454, "regtyperecv"), (2455, "regtypesend"))),
    2275: ("cstring", ((2292, "cstring_in"), (2293, "cstring_out"), (2500, "cstring_recv"), (2501, "cstring_send"))),
    2950: ("uuid", ((2952, "uuid_in"), (2953, "uuid_out"), (2961, "uuid_recv"), (2962, "uuid_send"))),
    2951: ("uuid[]", _ARRAY_IO),
    3802: ("jsonb", ((3806, "jsonb_in"), (3804, "jsonb_out"), (3805, "jsonb_recv"), (3803, "jsonb_send"))),
    4089: (
        "regnamespace",
        ((4084, "regnamespacein"), (4085, "regnamespaceout"), (4087, "regnamespacerecv"), (4088, "regnamespacesend")),
    ),
}
"""Every type the queries, their parameters, their results and the canonical rendering pass through
(`to_json` and `concat` print values with their type's output function), by fixed OID, with the
compiled functions (OID, name) that must be its input, output, receive and send functions (0: none)."""

ARRAY_ELEMENTS = {1009: 25, 1016: 20, 1022: 701, 1028: 26, 1034: 1033, 2951: 2950}
"""The relied-on array types' element types: verify subscripts and compares their elements."""
ARRAY_SUBSCRIPT_HANDLER = 6179
"""array_subscript_handler, every varlena array type's `typsubscript`."""

BUILTIN_CASTS = frozenset(
    """
16>23:2558ef 16>25:2971af 16>1043:2971af 18>23:77ef 18>25:946if 18>1043:946af 19>25:406if 19>1043:1401af
20>21:714af 20>23:480af 20>24:1287if 20>26:1287if 20>700:652if 20>701:482if 20>1700:1781if
20>2202:1287if 20>2204:1287if 20>2205:1287if 20>2206:1287if 20>4089:1287if 21>20:754if 21>23:313if
21>24:313if 21>26:313if 21>700:236if 21>701:235if 21>1700:1782if 21>2202:313if 21>2204:313if
21>2205:313if 21>2206:313if 21>4089:313if 23>16:2557ef 23>18:78ef 23>20:481if 23>21:314af 23>24:0ib
23>26:0ib 23>700:318if 23>701:316if 23>1700:1740if 23>2202:0ib 23>2204:0ib 23>2205:0ib 23>2206:0ib
23>4089:0ib 24>20:1288af 24>23:0ab 24>26:0ib 24>2202:0ib 25>18:944af 25>19:407if 25>1043:0ib
25>2205:1079if 26>20:1288af 26>23:0ab 26>24:0ib 26>2202:0ib 26>2204:0ib 26>2205:0ib 26>2206:0ib
26>4089:0ib 114>3802:0ai 700>20:653af 700>21:238af 700>23:319af 700>701:311if 700>1700:1742af
701>20:483af 701>21:237af 701>23:317af 701>700:312af 701>1700:1743af 1043>18:944af 1043>19:1400if
1043>25:0ib 1043>1043:669if 1043>2205:1079if 1114>1114:1961if 1114>1184:2028if 1184>1114:2027af
1184>1184:1967if 1700>20:1779af 1700>21:1783af 1700>23:1744af 1700>700:1745if 1700>701:1746if
1700>1700:1703if 2202>20:1288af 2202>23:0ab 2202>24:0ib 2202>26:0ib 2204>20:1288af 2204>23:0ab
2204>26:0ib 2205>20:1288af 2205>23:0ab 2205>26:0ib 2206>20:1288af 2206>23:0ab 2206>26:0ib 3802>16:3556ef
3802>20:3452ef 3802>21:3450ef 3802>23:3451ef 3802>114:0ai 3802>700:3453ef 3802>701:2580ef
3802>1700:3449ef 4089>20:1288af 4089>23:0ab 4089>26:0ib
""".split()
)
"""Every cast between two relied-on types, as PostgreSQL 15 and 16 compile it: `SOURCE>TARGET:FUNCTION` then
its context (e explicit, a assignment, i implicit) and method (f function, b binary, i I/O). A cast is
looked up in pg_cast whenever a query converts a value, so a superuser's `UPDATE pg_cast` (or a row they
add between these types) would run a function of theirs in the middle of verify's own checks."""

_IO_ROLES = ("input", "output", "receive", "send")

_Procs = dict[int, tuple[str, int, str | None, str]]
"""pg_proc as read: {OID: (name, language OID, library file, kind)}."""

PRELOAD_SETTINGS = ("shared_preload_libraries", "session_preload_libraries", "local_preload_libraries")
"""Settings that load native code into every session: code that can make any check in the server lie."""


def builtin_problems(raw: Any) -> list[tuple[str, str]]:
    """(object, what is wrong) for each function, operator or type above that is no longer PostgreSQL's own,
    and for native code a superuser can load into the server (user functions in C, preload settings).

    Everything is compared by OID with the values PostgreSQL compiled in (a renamed function cannot
    pass for another), catalogs are read as plain columns, and every comparison is made here in
    Python: no operator of the database decides whether operators lie. Built-ins are dispatched by
    OID to compiled code, so a function at its compiled OID in language `internal` runs that code.
    """
    procs: _Procs = {
        oid: (name, lang, binary, kind)
        for oid, name, lang, binary, kind in raw.execute(
            "SELECT p.oid, p.proname::pg_catalog.text, p.prolang, p.probin, p.prokind FROM pg_catalog.pg_proc p"
        )
    }

    def compiled(oid: int) -> bool:
        return oid < FIRST_USER_OID and procs.get(oid, ("", -1, None, ""))[1] == INTERNAL_LANGUAGE

    def shown(oid: int) -> str:
        return f"{procs[oid][0]} (OID {oid})" if oid in procs else f"OID {oid} (no such function)"

    problems: list[tuple[str, str]] = []
    names = ", ".join(f"%s::pg_catalog.regprocedure::pg_catalog.oid AS f{i}" for i in range(len(RELIED_ON_FUNCTIONS)))
    resolved = raw.execute(f"SELECT {names}", list(RELIED_ON_FUNCTIONS)).fetchone()
    for (signature, expected), oid in zip(RELIED_ON_FUNCTIONS.items(), resolved, strict=True):
        if oid != expected:
            problems.append(
                (f"function {signature}", f"resolves to {shown(oid)}, not PostgreSQL's own (OID {expected})")
            )
        elif not compiled(expected):
            problems.append((f"function {signature}", "was redefined: it is no longer PostgreSQL's compiled function"))
        elif procs[expected][3] != FUNCTION_KINDS.get(expected, "f"):
            problems.append(
                (
                    f"function {signature}",
                    f"is of kind {procs[expected][3]!r}, not {FUNCTION_KINDS.get(expected, 'f')!r} as PostgreSQL "
                    "compiled it (an aggregate runs the functions its pg_aggregate row names)",
                )
            )
    problems += _aggregate_problems(raw, compiled, shown)
    problems += _operator_problems(raw, procs, compiled)
    problems += _type_problems(raw, compiled, shown)
    problems += _cast_problems(raw, shown)
    problems += _native_code_problems(raw, procs)
    return problems


def _aggregate_problems(
    raw: Any, compiled: Callable[[int], bool], shown: Callable[[int], str]
) -> list[tuple[str, str]]:
    """Each relied-on aggregate's pg_aggregate row, whole: its functions, transition type and initial values."""
    stored = {
        int(row[0]): tuple(row[1:])
        for row in raw.execute(
            "SELECT a.aggfnoid::pg_catalog.oid, a.aggkind, a.aggnumdirectargs, a.aggtransfn::pg_catalog.oid, "
            "a.aggfinalfn::pg_catalog.oid, a.aggcombinefn::pg_catalog.oid, a.aggserialfn::pg_catalog.oid, "
            "a.aggdeserialfn::pg_catalog.oid, a.aggmtransfn::pg_catalog.oid, a.aggminvtransfn::pg_catalog.oid, "
            "a.aggmfinalfn::pg_catalog.oid, a.aggfinalextra, a.aggmfinalextra, a.aggfinalmodify, "
            "a.aggmfinalmodify, a.aggsortop, a.aggtranstype, a.aggtransspace, a.aggmtranstype, a.aggmtransspace, "
            "a.agginitval, a.aggminitval FROM pg_catalog.pg_aggregate a"
        )
    }
    problems: list[tuple[str, str]] = []
    signatures = {oid: signature for signature, oid in RELIED_ON_FUNCTIONS.items()}
    for oid, expected in RELIED_ON_AGGREGATES.items():
        label = f"aggregate {signatures.get(oid, f'OID {oid}')}"
        have = stored.get(oid)
        if have is None:
            problems.append((label, "has no pg_aggregate row"))
            continue
        changed = [
            f"{shown(have[i])} where PostgreSQL has {shown(expected[i]) if expected[i] else 'none'}"
            for i in _AGGREGATE_FUNCTIONS
            if have[i] != expected[i] or (expected[i] and not compiled(have[i]))
        ]
        if changed:
            problems.append((label, f"runs {'; '.join(changed)} (pg_aggregate was edited)"))
        elif have != expected:
            problems.append((label, f"its pg_aggregate row is {have}, not PostgreSQL's {expected}"))
    return problems


def _operator_problems(raw: Any, procs: _Procs, compiled: Callable[[int], bool]) -> list[tuple[str, str]]:
    types = {oid: name for name, oid in TYPE_OIDS.items()} | {
        17: "bytea",
        19: "name",
        21: "smallint",
        26: "oid",
        701: "double precision",
    }
    found: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    rows: dict[int, str] = {}
    codes: dict[int, int] = {}
    for oid, name, left, right, code, namespace, kind, merge, hash_, *rest in raw.execute(
        "SELECT o.oid, o.oprname::pg_catalog.text, o.oprleft, o.oprright, o.oprcode::pg_catalog.oid, o.oprnamespace, "
        "o.oprkind, o.oprcanmerge, o.oprcanhash, o.oprresult, o.oprcom, o.oprnegate, o.oprrest::pg_catalog.oid, "
        "o.oprjoin::pg_catalog.oid FROM pg_catalog.pg_operator o"
    ):
        codes[int(oid)] = int(code)
        rows[int(oid)] = f"{oid}:{kind}{'m' if merge else '-'}{'h' if hash_ else '-'}:" + ":".join(map(str, rest))
        key = (name, types.get(left, ""), types.get(right, ""))
        if key in RELIED_ON_OPERATORS and namespace == PG_CATALOG_NAMESPACE:
            found.setdefault(key, []).append((oid, code))
    problems: list[tuple[str, str]] = []
    expected_rows = {int(row.partition(":")[0]): row for row in OPERATOR_ROWS}
    for key, (function, function_oid) in RELIED_ON_OPERATORS.items():
        label = f"operator {key[0]} ({key[1]}, {key[2]})"
        implementations = found.get(key, [])
        if len(implementations) != 1:
            problems.append((label, f"exists {len(implementations)} times in pg_catalog, expected once"))
            continue
        oid, code = implementations[0]
        if oid >= FIRST_USER_OID or code != function_oid or not compiled(code):
            name = procs.get(code, (str(code),))[0]
            problems.append((label, f"is implemented by {name} (OID {code}), not PostgreSQL's {function}"))
        elif rows[oid] != expected_rows.get(oid) or not all(
            compiled(int(f)) for f in rows[oid].split(":")[5:] if f != "0"
        ):
            problems.append(
                (
                    label,
                    f"has the pg_operator row {rows[oid]}, not PostgreSQL's "
                    f"{expected_rows.get(oid, '(none at that OID)')} "
                    "(OID:kind, merge- and hash-joinable:result:commutator:negator:estimators): a superuser edited it, "
                    "which changes how the planner may join, or what it runs",
                )
            )
    return problems + _opfamily_problems(raw, compiled, codes)


def _opfamily_problems(raw: Any, compiled: Callable[[int], bool], codes: dict[int, int]) -> list[tuple[str, str]]:
    """The btree and hash operator families of uuid, text and bigint, entry by entry, against PostgreSQL's own.

    A join, grouping or sort on those types runs the families' support functions (comparison, hashing) and
    operators; an entry removed, added or re-pointed changes what verify's bulk queries compute, or makes
    them unplannable. Read as plain columns and compared here, as the rest of this check.
    """
    families = list(OPERATOR_FAMILIES)
    problems: list[tuple[str, str]] = []
    stored = {
        int(oid): (int(method), str(name), int(namespace))
        for oid, method, name, namespace in raw.execute(
            "SELECT f.oid, f.opfmethod, f.opfname::pg_catalog.text, f.opfnamespace FROM pg_catalog.pg_opfamily f "
            "WHERE f.oid OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.oid[])",
            (families,),
        )
    }
    for oid, (method, name) in OPERATOR_FAMILIES.items():
        if stored.get(oid) != (method, name, PG_CATALOG_NAMESPACE):
            problems.append((f"operator family {name} (OID {oid})", f"is {stored.get(oid)}, not PostgreSQL's own"))
    amop = {
        f"{family}:{left}>{right}:{strategy}{purpose}:{operator}:{method}:{sort}"
        for family, left, right, strategy, purpose, operator, method, sort in raw.execute(
            "SELECT a.amopfamily, a.amoplefttype, a.amoprighttype, a.amopstrategy, a.amoppurpose, a.amopopr, "
            "a.amopmethod, a.amopsortfamily FROM pg_catalog.pg_amop a "
            "WHERE a.amopfamily OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.oid[])",
            (families,),
        )
    }
    amproc = {
        f"{family}:{left}>{right}:{number}:{function}"
        for family, left, right, number, function in raw.execute(
            "SELECT a.amprocfamily, a.amproclefttype, a.amprocrighttype, a.amprocnum, a.amproc::pg_catalog.oid "
            "FROM pg_catalog.pg_amproc a WHERE a.amprocfamily OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.oid[])",
            (families,),
        )
    }
    for table, have, want in (("pg_amop", amop, BUILTIN_AMOP), ("pg_amproc", amproc, BUILTIN_AMPROC)):
        for entry in sorted(have ^ want):
            family = OPERATOR_FAMILIES[int(entry.partition(":")[0])]
            what = "is missing" if entry in want else "was added (PostgreSQL has no such entry)"
            problems.append(
                (
                    f"operator family {family[1]} ({'btree' if family[0] == 403 else 'hash'})",
                    f"{table} entry {entry} {what}",
                )
            )
    for entry in sorted(amproc & BUILTIN_AMPROC):
        function = int(entry.rpartition(":")[2])
        if not compiled(function):
            problems.append(
                (
                    f"{entry} in pg_amproc",
                    f"support function OID {function} is no longer PostgreSQL's compiled function",
                )
            )
    for entry in sorted(amop & BUILTIN_AMOP):
        operator = int(entry.split(":")[3])
        if not compiled(codes.get(operator, 0)):
            problems.append(
                (f"operator OID {operator} (pg_amop {entry})", "is not implemented by a PostgreSQL compiled function")
            )
    return problems


def _type_problems(raw: Any, compiled: Callable[[int], bool], shown: Callable[[int], str]) -> list[tuple[str, str]]:
    """Each relied-on type's input, output, receive and send function: a type whose output function a
    superuser re-pointed (`UPDATE pg_type SET typoutput`) prints whatever that function prints."""
    stored = {
        oid: functions
        for oid, *functions in raw.execute(
            "SELECT t.oid, t.typinput::pg_catalog.oid, t.typoutput::pg_catalog.oid, "
            "t.typreceive::pg_catalog.oid, t.typsend::pg_catalog.oid, t.typelem, t.typsubscript::pg_catalog.oid "
            "FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.oid[])",
            (list(RELIED_ON_TYPES),),
        )
    }
    problems: list[tuple[str, str]] = []
    for type_oid, (label, expected) in RELIED_ON_TYPES.items():
        if type_oid not in stored:
            problems.append((f"type {label}", f"is missing from pg_type (OID {type_oid})"))
            continue
        *functions, element, subscript = stored[type_oid]
        for role, (want, want_name), have in zip(_IO_ROLES, expected, functions, strict=True):
            if have != want or (want and not compiled(have)):
                problems.append(
                    (f"type {label}", f"{role} function is {shown(have)}, not PostgreSQL's compiled {want_name}")
                )
        if type_oid in ARRAY_ELEMENTS and (element, subscript) != (ARRAY_ELEMENTS[type_oid], ARRAY_SUBSCRIPT_HANDLER):
            problems.append(
                (
                    f"type {label}",
                    f"has element type OID {element} and subscript handler {shown(subscript)}, not PostgreSQL's "
                    f"{ARRAY_ELEMENTS[type_oid]} and array_subscript_handler",
                )
            )
    return problems


def _cast_problems(raw: Any, shown: Callable[[int], str]) -> list[tuple[str, str]]:
    """Every cast between two relied-on types against PostgreSQL's own (read as plain columns, compared here).

    A cast a user adds between other types (the app role's own, in agent_ext) is not read: verify's
    queries never hold a value of such a type, so it cannot change what they compute.
    """
    types = list(RELIED_ON_TYPES)
    found = {
        f"{source}>{target}:{function}{context}{method}"
        for source, target, function, context, method in raw.execute(
            "SELECT c.castsource, c.casttarget, c.castfunc, c.castcontext, c.castmethod FROM pg_catalog.pg_cast c "
            "WHERE c.castsource OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.oid[]) "
            "AND c.casttarget OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.oid[])",
            (types, types),
        )
    }
    problems: list[tuple[str, str]] = []
    for cast in sorted(found ^ BUILTIN_CASTS, key=_cast_order):
        pair, _, how = cast.partition(":")
        source, target = (int(oid) for oid in pair.split(">"))
        label = f"cast ({_type_label(source)} AS {_type_label(target)})"
        if cast in BUILTIN_CASTS:
            if not any(other.startswith(f"{pair}:") for other in found):
                problems.append((label, "is missing from pg_cast"))
            continue
        function, context, method = int(how[:-2]), how[-2], how[-1]
        usage = f"runs {shown(function)}" if function else f"method {method!r}"
        builtin = next((other for other in BUILTIN_CASTS if other.startswith(f"{pair}:")), None)
        where = f"PostgreSQL's is {builtin.partition(':')[2]}" if builtin else "PostgreSQL has no such cast"
        problems.append((label, f"{usage} (context {context!r}): {where}; a superuser created or edited it"))
    return problems


def _cast_order(cast: str) -> tuple[int, int, str]:
    source, _, rest = cast.partition(">")
    target, _, how = rest.partition(":")
    return int(source), int(target), how


def _type_label(oid: int) -> str:
    return RELIED_ON_TYPES[oid][0] if oid in RELIED_ON_TYPES else f"OID {oid}"


def _native_code_problems(raw: Any, procs: _Procs) -> list[tuple[str, str]]:
    """Native code a superuser loaded: code that can make any check in this server, this one too, lie.

    Named: a function a user created in any language but internal, sql or plpgsql (C, plperlu, ...),
    a C function outside PostgreSQL's own library directory, and a preload setting that is not empty
    (server-wide as far as this login may read it, and per database or role in pg_db_role_setting).
    """
    plpgsql = {
        int(oid)
        for (oid,) in raw.execute(
            "SELECT l.oid FROM pg_catalog.pg_language l "
            "WHERE l.lanname OPERATOR(pg_catalog.=) 'plpgsql'::pg_catalog.name"
        )
        if int(oid) < FIRST_USER_OID
    }
    trusted = {INTERNAL_LANGUAGE, SQL_LANGUAGE} | plpgsql
    problems: list[tuple[str, str]] = []
    for oid, (name, language, binary, _) in sorted(procs.items()):
        if oid >= FIRST_USER_OID and language not in trusted:
            problems.append(
                (
                    f"function {name} (OID {oid})",
                    f"is user-created native code (language OID {language}, {binary or 'no library'}): "
                    "it can make any check in this server lie; drop it, or verify an offline bundle",
                )
            )
        elif language == C_LANGUAGE and not (binary or "").startswith("$libdir/"):
            problems.append(
                (
                    f"function {name} (OID {oid})",
                    f"runs native code from {binary!r}, outside PostgreSQL's library directory",
                )
            )
    settings = list(
        raw.execute(
            "SELECT s.name::pg_catalog.text, s.setting::pg_catalog.text FROM pg_catalog.pg_settings s "
            "WHERE s.name OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.text[])",
            (list(PRELOAD_SETTINGS),),
        )
    )
    for name, value in settings:
        if value:
            problems.append((f"setting {name}", f"loads {value!r} into sessions: native code verify cannot vouch for"))
    for database, role, config in raw.execute(
        "SELECT s.setdatabase, s.setrole, s.setconfig::pg_catalog.text[] FROM pg_catalog.pg_db_role_setting s"
    ):
        for entry in config or []:
            name, _, value = str(entry).partition("=")
            if name.lower() in PRELOAD_SETTINGS and value:
                where = f"database OID {database}" if database else "every database"
                who = f"role OID {role}" if role else "every role"
                problems.append(
                    (f"setting {name.lower()}", f"loads {value!r} for {who} in {where} (ALTER DATABASE/ROLE ... SET)")
                )
    return problems


def expected_columns(table: str) -> dict[str, str]:
    """{column: PostgreSQL type name} as the models declare the table."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return {column.name: column.type.compile(dialect=dialect).lower() for column in Base.metadata.tables[table].columns}


def stored_columns(raw: Any, table: str) -> dict[str, int]:
    """{column: type OID} of `public.<table>` as the database holds it now."""
    return {
        name: type_oid
        for name, type_oid in raw.execute(
            "SELECT a.attname::pg_catalog.text, a.atttypid FROM pg_catalog.pg_attribute a "
            "WHERE a.attrelid = %s::pg_catalog.regclass::pg_catalog.oid "
            "AND a.attnum OPERATOR(pg_catalog.>) 0::pg_catalog.int2 AND NOT a.attisdropped",
            (f"public.{table}",),
        )
    }


def _key_order(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return len(encoded), encoded


def _member(column: str, kind: str) -> list[str]:
    """`, "column": value` as arguments of one `concat` (which skips NULLs): nothing when the value is NULL.

    The key is given only when the value is there (JSON null in a jsonb column counts as absent,
    as `jarvis_canonical` drops it); the value goes in as itself, printed by its type's output
    function, or through `to_json` where JSON needs quoting or another timestamp format.
    """
    key = f"', \"{column}\": '"
    value = f"x.{column}"
    if kind == "uuid":
        return [
            f"CASE WHEN {value} IS NOT NULL THEN {key[:-1]}\"' END",
            value,
            f"CASE WHEN {value} IS NOT NULL THEN '\"' END",
        ]
    if kind == "jsonb":
        present = f"pg_catalog.jsonb_typeof({value}) <> 'null'::pg_catalog.text"
        return [f"CASE WHEN {present} THEN {key} END", f"CASE WHEN {present} THEN {value} END"]
    present = f"CASE WHEN {value} IS NOT NULL THEN {key} END"
    if kind in ("text", "timestamp with time zone"):
        return [present, f"pg_catalog.to_json({value})"]
    return [present, value]  # integer, bigint: their decimal text


def canonical_sql(table: str, columns: dict[str, str] | None) -> str:
    """An expression for the row `x`'s canonical text (encoding 2).

    With the models' `columns` it is one `concat` of the members in canonical key order; without
    (the table's columns differ from the models') it is the sealer's own `jarvis_canonical`.
    """
    if columns is None:
        return f"public.jarvis_canonical('{table}'::pg_catalog.text, pg_catalog.to_jsonb(x))"
    members = {name: _member(name, kind) for name, kind in columns.items()}
    members["$table"] = [f'\', "$table": "{table}"\'']
    arguments = [argument for key in sorted(members, key=_key_order) for argument in members[key]]
    # Every member starts with ", "; the first one's is cut off (substr from the third character).
    return f"'{{' || pg_catalog.substr(pg_catalog.concat({', '.join(arguments)}), 3) || '}}'"


def renderable_columns(raw: Any, table: str) -> dict[str, str] | None:
    """The models' columns when the stored table has exactly those (names and types); else None."""
    wanted = expected_columns(table)
    if any(kind not in TYPE_OIDS for kind in wanted.values()):
        return None
    have = stored_columns(raw, table)
    if have != {name: TYPE_OIDS[kind] for name, kind in wanted.items()}:
        return None
    return wanted


def row_check_sql(table: str, columns: dict[str, str] | None, *, every_row: bool, id_is_uuid: bool) -> str:
    """Rows of `table` and their links that disagree, or that need a closer look in Python.

    `every_row` (a full verify) reads every row of the table and every link of it, joined both ways:
    a row in no link and a link whose row is gone both come back from this one pass, so completeness
    never rests on counting; otherwise only the links after `%(after)s` with their rows. Parameters:
    after, heads (checkpoint positions, sorted), lower and upper (epoch bounds of created_at per checkpoint
    interval), low and high (the loadable range). Returned: row id
    (NULL: deleted), the link's row id (NULL: not in the chain), seq, encoding, whether the hash
    matches, created_at's epoch, the checkpoint interval, and the link's row hash.
    """
    key = row_key(table, id_is_uuid)
    links = (
        "SELECT l.seq, l.row_id, l.row_hash, l.encoding FROM ONLY public.audit_chain l "
        f"WHERE l.table_name = '{table}'::pg_catalog.text"
    )
    if every_row:
        source = f"ONLY public.{table} x FULL JOIN ({links}) c ON c.row_id = {key}"
    else:
        links += " AND l.seq > %(after)s::pg_catalog.int8"
        source = f"({links}) c LEFT JOIN ONLY public.{table} x ON {key} = c.row_id"
    return (
        f"SELECT {key} AS row_id, c.row_id AS link_row_id, c.seq, c.encoding, matches, epoch, interval, c.row_hash "
        f"FROM {source}, "
        "LATERAL (SELECT c.row_hash = pg_catalog.sha256(pg_catalog.convert_to("
        f"{canonical_sql(table, columns)}, 'UTF8'::pg_catalog.name)) AS matches, "
        "pg_catalog.date_part('epoch'::pg_catalog.text, x.created_at) AS epoch, "
        "pg_catalog.width_bucket(c.seq - 1::pg_catalog.int8, %(heads)s::pg_catalog.int8[]) AS interval) v "
        "WHERE x.id IS NULL OR c.row_id IS NULL OR c.encoding <> 2::pg_catalog.int2 OR matches IS NOT TRUE "
        "OR x.created_at IS NULL OR x.created_at < %(low)s::pg_catalog.timestamptz "
        "OR x.created_at >= %(high)s::pg_catalog.timestamptz "
        "OR epoch < (%(lower)s::pg_catalog.float8[])[interval] "
        "OR epoch > (%(upper)s::pg_catalog.float8[])[interval + 1::pg_catalog.int4]"
    )


def row_key(table: str, id_is_uuid: bool) -> str:
    """The row `x`'s id as its links name it (schema_changes' bigints through `jarvis_serial_uuid`)."""
    return "x.id" if id_is_uuid else "public.jarvis_serial_uuid(x.id)"


LINK_CHECK_SQL = (
    "SELECT s.seq, s.table_name, s.row_id, s.previous_seq, s.chain_hash <> s.recomputed AS bad_link, s.encoding "
    "FROM (SELECT l.seq, l.table_name, l.row_id, l.encoding, l.chain_hash, "
    "  pg_catalog.lag(l.seq, 1, %(after)s::pg_catalog.int8) OVER w AS previous_seq, "
    "  pg_catalog.sha256(pg_catalog.lag(l.chain_hash, 1, %(previous)s::pg_catalog.bytea) OVER w "
    "    || pg_catalog.int8send(l.seq) || pg_catalog.convert_to(l.table_name, 'UTF8'::pg_catalog.name) "
    "    || '\\x00'::pg_catalog.bytea || pg_catalog.uuid_send(l.row_id) || l.row_hash) AS recomputed "
    "  FROM ONLY public.audit_chain l WHERE l.seq > %(after)s::pg_catalog.int8 WINDOW w AS (ORDER BY l.seq)) s "
    "WHERE s.chain_hash <> s.recomputed OR s.seq <> s.previous_seq + 1::pg_catalog.int8 "
    "OR s.encoding <> 1::pg_catalog.int2 AND s.encoding <> 2::pg_catalog.int2"
)
"""Links after `%(after)s` that do not follow from their stored predecessor (the first from
`%(previous)s`), positions skipped, and unknown encodings."""


RELATIONS: dict[str, tuple[bool, bool]] = {
    "planning_cycles": (True, False),
    "tool_calls": (True, True),
    "decision_log": (False, True),
}
"""Per table: whether its rows name a start row (`parent_id`) and a planning cycle (`cycle_id`). These are the
checks of the sealer (migration 0008) that the rows alone can show; schema_changes has none."""


def relation_check_sql(table: str) -> str:
    """Rows of `table` the sealer would flag from the rows alone (migration 0008's MISSING_PARENT, OUTSIDE_CYCLE).

    A completion whose start row is missing or dated after it; a start row or decision whose cycle is
    missing or dated before it began, or after its close (the slack is applied in Python: every row
    dated after the close comes back, with both times). One pass, a join per reference, in the verifying
    snapshot; only candidate rows come back. Returned: id, created_at's epoch, parent_id, whether the
    start row exists, whether the row is dated before it, cycle_id, whether the cycle exists, whether the
    row is dated before the cycle began, the close's epoch, the start row's and the cycle's created_at.
    """
    parent, cycle = RELATIONS[table]
    epoch = "pg_catalog.date_part('epoch'::pg_catalog.text, {})"
    joins, conditions = [], []
    if parent:
        joins.append(f" LEFT JOIN ONLY public.{table} s ON s.id = x.parent_id")
        conditions.append("x.parent_id IS NOT NULL AND (s.id IS NULL OR x.created_at < s.created_at)")
        parent_columns = "x.parent_id, s.id IS NOT NULL, x.created_at < s.created_at, s.created_at::pg_catalog.text"
    else:
        parent_columns = "NULL::pg_catalog.uuid, false, false, NULL::pg_catalog.text"
    if cycle:
        joins.append(
            " LEFT JOIN ONLY public.planning_cycles c ON c.id = x.cycle_id"
            " LEFT JOIN ONLY public.planning_cycles e ON e.parent_id = x.cycle_id"
        )
        conditions.append(
            "x.cycle_id IS NOT NULL AND (c.id IS NULL OR x.created_at < c.created_at OR e.created_at < x.created_at)"
        )
        cycle_columns = (
            f"x.cycle_id, c.id IS NOT NULL, x.created_at < c.created_at, {epoch.format('e.created_at')}, "
            "c.created_at::pg_catalog.text, e.created_at::pg_catalog.text"
        )
    else:
        cycle_columns = (
            "NULL::pg_catalog.uuid, false, false, NULL::pg_catalog.float8, NULL::pg_catalog.text, NULL::pg_catalog.text"
        )
    return (
        f"SELECT x.id, {epoch.format('x.created_at')}, {parent_columns}, {cycle_columns} "
        f"FROM ONLY public.{table} x{''.join(joins)} WHERE {' OR '.join(f'({c})' for c in conditions)}"
    )
