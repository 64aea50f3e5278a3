"""The effort analysis calibrated by simulation (issue 22): the omnibus test's size at nominal .05
for a shared r of 0, .5 and .7 (the previous mixed-model LR test on z-scored costs gave .05, .025
and .000), its power as r moves apart, how often BF01 claims "no change" when r changes, and the
ceiling-or-dial verdict's confusion table on simulated dial, ceiling and reversed studies.

Seeds fixed; benchmarks/effort_calibration.py prints the same tables at more studies, side by side
with the previous version, and docs/report.md records its result.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cogdistill.stats import effort as E
from helpers.effort_sims import TRUTHS, draw

pytestmark = pytest.mark.slow
SIMS, N_ITEMS = 2000, 40
MC_SE = (0.05 * 0.95 / SIMS) ** 0.5  # 0.0049


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.7])
def test_omnibus_size_is_nominal_for_any_shared_r(rho):
    rng = np.random.default_rng(int(rho * 10) + 1)
    p = np.array([E.equal_r_test(*draw(rng, N_ITEMS, (rho, rho, rho)))["p"] for _ in range(SIMS)])
    assert np.isfinite(p).all()
    assert abs((p < 0.05).mean() - 0.05) < 3 * MC_SE, (p < 0.05).mean()
    # and the p-values are uniform, not only right at .05
    assert abs((p < 0.20).mean() - 0.20) < 3 * (0.2 * 0.8 / SIMS) ** 0.5


def test_power_grows_with_the_change_and_bf01_rarely_claims_no_change():
    rng = np.random.default_rng(7)
    power, bf_no_change = [], None
    for high in (0.3, 0.5, 0.7):
        res = [E.equal_r_test(*draw(rng, N_ITEMS, (0.3, high))) for _ in range(1000)]
        power.append(np.mean([r["p"] < 0.05 for r in res]))
        if high == 0.7:
            bf_no_change = np.mean([r["bf01"] > 3 for r in res])
            assert not any(r["bf01"] > 3 and r["p"] < 0.05 for r in res)
    assert abs(power[0] - 0.05) < 0.025 and power[0] < power[1] < power[2] and power[2] > 0.8
    assert bf_no_change < 0.05  # the BIC counts items: "evidence of no change" under a true change is rare


def _verdicts(n: int, rhos, sims: int, rng) -> Counter:
    out = Counter()
    for _ in range(sims):
        costs, d = draw(rng, n, rhos)
        cd = E.ceiling_or_dial(costs[:, -1] - costs[:, 0], d, low="low", high="high", n_boot=20)
        out[cd["verdict"]] += 1
    return Counter({k: v / sims for k, v in out.items()})


def test_verdict_confusion_table():
    rng = np.random.default_rng(23)
    sims = 400
    table = {(n, truth): _verdicts(n, rhos, sims, rng) for n in (6, 40) for truth, rhos in TRUTHS.items()}
    # 40 items: each truth is named as itself most of the time; a wrong direction almost never
    assert table[(40, "dial")][E.DIAL] > 0.9 and table[(40, "dial")][E.REVERSED] < 0.01
    assert table[(40, "reversed")][E.REVERSED] > 0.9 and table[(40, "reversed")][E.DIAL] < 0.01
    assert table[(40, "ceiling")][E.CEILING] > 0.5
    assert table[(40, "ceiling")][E.DIAL] + table[(40, "ceiling")][E.REVERSED] < 0.05 + 3 * (0.05 * 0.95 / sims) ** 0.5
    # 6 items cannot show a ceiling (max BF01 is below 3): a dial is never called a ceiling, and
    # what cannot be told apart is "undecided", not a ceiling (the previous verdict: ceiling 76%)
    for truth in TRUTHS:
        assert table[(6, truth)][E.CEILING] == 0.0
    assert table[(6, "dial")][E.UNDECIDED] > 0.5 and table[(6, "ceiling")][E.UNDECIDED] > 0.8
    # the strong reversed relation of issue 22 (r = -.81, p = 3e-10) is reversed, not a ceiling
    z = np.linspace(-2, 2, 40)
    delta = -0.81 * z + 0.59 * np.random.default_rng(1).standard_normal(40) * z.std()
    cd = E.ceiling_or_dial(delta, z, low="low", high="high", n_boot=50)
    assert cd["r"] < -0.6 and cd["verdict"] == E.REVERSED and "p =" in cd["verdict_reason"]


def test_verdict_rules_and_their_evidence():
    assert E.verdict(0.4, 0.01, 0.1)[0] == E.DIAL
    assert E.verdict(-0.4, 0.01, 0.1)[0] == E.REVERSED
    assert E.verdict(0.02, 0.8, 4.0)[0] == E.CEILING
    verdict, why = E.verdict(0.2, 0.2, 1.5)
    assert verdict == E.UNDECIDED and "BF01 = 1.5" in why
    assert E.verdict(float("nan"), float("nan"), float("nan"))[0] is None
