"""Jarvis: the persistence and audit backbone of an autonomous agent."""
