"""One handler per event type, grouped by where the event comes from; each labelled comment is
one transition.

A handler runs only in the states its row of :data:`supervisor.lifecycle.table.TABLE` names (the
table is where a reader sees which states an event matters to); inside, it may still branch on
the state. The modules: :mod:`.container` (runtime events), :mod:`.login` (IBC's login lines),
:mod:`.suspect` (log lines held while the probe sees the session healthy), :mod:`.relaunch`
(relaunches IBC announces), :mod:`.probe` (what the API probe sees), :mod:`.schedule` (daily
restart, reset windows, weekly re-authentication) and :mod:`.commands` (operators and the
supervisor's stop). The Tick handler, which acts on time alone, is :mod:`..deadlines`.
"""
