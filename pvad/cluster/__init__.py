"""Several analysis servers behind HAProxy on one machine or many (DESIGN.md §9, README "Production: several servers").

`haproxy` writes HAProxy's configuration; `processes` runs PostgreSQL, HAProxy and `pvad server` processes as
children (`pvad cluster up`, `pvad bench cluster`).
"""
