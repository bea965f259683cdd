import time, pytest
from dupguard import breezeway as bw
from dupguard.breezeway_config import CHILD_TABLES
from tests.breezeway.conftest import expected_keepers, catalog_fingerprint
CONN="breezeway_postgres"

def test_smoke(bw):
    exp = expected_keepers(bw); fp = catalog_fingerprint(bw); bw.commit()
    t0=time.time()
    for step in (bw_claim := None,):
        pass
    r = bw_mod = None
    res = bw.__class__  # noop
    from dupguard import breezeway as m
    print(m.claim(CONN, "r1"))
    print(m.preflight(CONN, "r1"))
    print(m.backup(CONN, "r1"))
    print(m.dedup(CONN, "r1"))
    print(m.reclaim(CONN, "r1"))
    print(m.constraints(CONN, "r1"))
    print(m.quality_gate(CONN, "r1"))
    print(m.finish(CONN, "r1"))
    print("elapsed", time.time()-t0)
    for t in CHILD_TABLES:
        got = {r[0] for r in bw.execute(f"select id from breezeway.{t.name}")}
        assert got == exp[t.name], t.name
    assert catalog_fingerprint(bw) == fp
    bw.commit()
    print(m.claim_rollback(CONN, "rb1"))
    print(m.drop_constraints(CONN, "rb1"))
    print(m.restore_rows(CONN, "rb1"))
    print(m.rollback_gate(CONN, "rb1"))
    print(m.finish_rollback(CONN, "rb1"))
