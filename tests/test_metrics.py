import numpy as np
import pytest
from sklearn import metrics as skm

from cnnstudy.training.metrics import classification_metrics, overfitting_verdict


def test_metrics_equal_scikit_learn_on_fixed_arrays():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[targets]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    preds = probs.argmax(1)
    m = classification_metrics(probs, targets, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(targets, preds))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        for avg in ("macro", "weighted"):
            assert m[f"{name}_{avg}"] == pytest.approx(fn(targets, preds, average=avg), abs=1e-6)
        per_class = fn(targets, preds, average=None)
        assert [m["per_class"][c][name] for c in "abcd"] == pytest.approx(per_class, abs=1e-6)
    aucs = [skm.roc_auc_score(targets == k, probs[:, k]) for k in range(4)]
    assert [m["per_class"][c]["auc"] for c in "abcd"] == pytest.approx(aucs, abs=1e-5)
    assert m["auc_macro"] == pytest.approx(skm.roc_auc_score(targets, probs, multi_class="ovr"), abs=1e-5)
    assert m["confusion_matrix"] == skm.confusion_matrix(targets, preds).tolist()


def test_absent_class_has_no_auc():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    m = classification_metrics(probs, np.array([0, 1]), ["a", "b", "c"])
    assert m["per_class"]["c"]["auc"] is None and m["auc_macro"] == pytest.approx(1.0)


def rows(train, val, val_loss):
    return [{"epoch": i + 1, "train_acc": t, "val_acc": v, "val_loss": loss}
            for i, (t, v, loss) in enumerate(zip(train, val, val_loss))]


def test_verdicts():
    seed_like = overfitting_verdict(rows([0.80, 0.9385], [0.76, 0.7743], [0.8, 0.99]))
    assert seed_like["verdict"] == "overfit" and seed_like["gap"] == pytest.approx(0.1642)
    rising = overfitting_verdict(rows([0.8, 0.85, 0.86], [0.8, 0.82, 0.81], [0.5, 0.4, 0.6]))
    assert rising["verdict"] == "overfit" and rising["val_loss_min_epoch"] == 2
    assert overfitting_verdict(rows([0.4, 0.5], [0.45, 0.5], [1.2, 1.1]))["verdict"] == "underfit"
    assert overfitting_verdict(rows([0.8, 0.9], [0.82, 0.88], [0.5, 0.4]))["verdict"] == "fits well"
