"""The chaos suite: seeded fault schedules against simulator containers, checked over a history.

``schedule`` draws the faults (pure), ``history`` holds what happened, ``invariants`` judges it
(pure), ``runner`` runs a schedule against the real parts and collects the history.
"""
