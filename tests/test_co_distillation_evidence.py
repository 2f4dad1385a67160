"""The co-distillation evidence script end to end in smoke mode, and its
communication arithmetic."""

import json

import keras
import pytest
from test_evidence_harness import _synthetic_archive


def test_communication_counts_bytes_from_the_parameter_count():
    import co_distillation_evidence

    picture = co_distillation_evidence.communication(
        parameters=1000, total_steps=100, refresh_steps=10, burn_in_steps=0
    )
    assert picture["exchanges"] == 10
    assert picture["bytes_per_exchange_written"] == 4000
    assert picture["co_distillation_total_bytes"] == 10 * 2 * 4000
    # A ring all-reduce over 2 workers: each sends 2 * (2 - 1) / 2 * 4P.
    assert picture["all_reduce_bytes_per_worker_per_step"] == 4000
    assert picture["all_reduce_total_bytes"] == 100 * 2 * 4000
    assert picture["ratio"] == 10.0


# Backend-independent, and the script decodes JPEGs with TensorFlow.
@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="backend-independent; runs in the TensorFlow pass")
def test_smoke_runs_every_arm_and_reports_peers_and_ensembles(tmp_path):
    import co_distillation_evidence

    archive = tmp_path / "cifar.npz"
    _synthetic_archive(archive)
    output, markdown = tmp_path / "result.json", tmp_path / "result.md"
    co_distillation_evidence.main(["--cifar10", str(archive), "--smoke",
                                   "--output", str(output), "--markdown", str(markdown)])

    results = json.loads(output.read_text())
    assert [run["arm"] for run in results["runs"]] == [
        "independent", "co_distillation", "mutual_learning"]
    for run in results["runs"]:
        # The served ensemble of the two peers, and each peer.
        assert set(run["test"]) == {"served", "peer_a", "peer_b"}
    assert results["communication"]["exchanges"] >= 1
    page = markdown.read_text()
    assert "| co_distillation peer_a |" in page and "Communication" in page
