"""`keras-crl compare-backends` end to end, on tiny settings."""

import json

from keras_crl import cli


def test_compare_backends_writes_an_agreeing_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        cli.main(
            [
                "compare-backends",
                "--epochs",
                "2",
                "--limit",
                "256",
                "--loss",
                "ce",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["backend"] for r in rows] == ["tensorflow", "torch", "jax"]
    for row in rows:
        assert row["max_weight_diff"] < 1e-3 and row["max_loss_diff"] < 1e-4, row
        assert row["test_accuracy"] == rows[0]["test_accuracy"]
    for name in ("comparison.md", "loss.png", "accuracy.png", "torch/metrics.json"):
        assert (out / name).exists(), name
    assert "| jax |" in capsys.readouterr().out
