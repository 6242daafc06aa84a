"""The fault tests' baseline: on its own services, with nothing broken, every upload answered
200 is stored and processed by a real `crashd worker` (and the services are really the test's
own, not the shared ones)."""

from __future__ import annotations

from faults.services import Ledger, ingest_key, settle, upload


def test_own_services_process_every_upload(fault_env, own_postgres, own_redis, processes) -> None:
    assert own_postgres.port != 5432 and own_redis.port != 6379
    server = processes.serve(fault_env)
    processes.worker(fault_env)
    key, ledger = ingest_key(own_postgres), Ledger()
    for tag in range(20):
        assert upload(server, key, tag, ledger) == 200
    counts = settle(own_postgres, ledger)
    assert counts == {"processed": 20}, counts
    assert (len(ledger.answered), ledger.refused, ledger.dropped) == (20, {}, 0)
