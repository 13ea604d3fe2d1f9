import numpy as np

from mer_live.stats import STAT_NAMES, feature_names, quadrant, segment_statistics


def test_statistics_match_hand_computed_values():
    probs = np.array([[0.1, 0.9], [0.6, 0.2], [0.8, 0.4], [0.3, 0.7]])
    f = segment_statistics(probs, theta=0.5)
    assert len(f) == 2 * len(STAT_NAMES) == len(feature_names(["valence", "arousal"]))
    v = dict(zip(STAT_NAMES, f[:7]))
    assert v["max"] == 0.8 and v["min"] == 0.1
    assert np.isclose(v["mean"], 0.45)
    assert np.isclose(v["p50"], np.percentile(probs[:, 0], 50))
    assert np.isclose(v["p25"], np.percentile(probs[:, 0], 25))
    assert v["share_above"] == 0.5


def test_quadrants():
    assert quadrant(True, True) == "Q1" and quadrant(False, True) == "Q2"
    assert quadrant(False, False) == "Q3" and quadrant(True, False) == "Q4"
