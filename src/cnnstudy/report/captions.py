"""One line under every figure of the report: what it shows and how to read it."""
from __future__ import annotations

from pathlib import Path

RUN_PLOTS = ["curves.png", "roc.png", "confusion.png", "predictions.png", "gradcam.png", "why_wrong.png",
             "reliability.png"]
# Photographs (grids of images): embedded in report.html as JPEG, where PNG would make it tens of MB.
PHOTO_PLOTS = ("predictions.png", "gradcam.png", "why_wrong.png", "cam-", "data-")

CAPTIONS = {
    "curves.png": "Loss (left) and accuracy (right) per epoch, on the training images as trained and on the "
                  "validation images: validation falling behind while training improves is overfitting.",
    "roc.png": "One-vs-rest ROC of each class on the scored images, its AUC in the legend (0.5: chance, 1: "
               "perfect separation of that class from the rest).",
    "confusion.png": "Confusion matrix on the scored images: rows are the true classes, columns the predicted "
                     "ones; the diagonal counts the right answers.",
    "predictions.png": "Scored images spread over every class, each titled with its true and predicted class "
                       "(red: wrong).",
    "gradcam.png": "Grad-CAM of every other image above: where the model found the evidence for the class it "
                   "predicted (red: most, blue: none), at the resolution of its last conv layer.",
    "why_wrong.png": "The most confident mistakes, with the Grad-CAM of the class the model wrongly chose: what "
                     "it took for evidence.",
    "reliability.png": "Reliability: accuracy against confidence, one point per confidence bin (area: its share "
                       "of images); on the diagonal, confidence means what it says. ECE is the weighted gap.",
    "comparison.png": "Test accuracy of every run with its 95% interval (over repeats; Wilson's on the images "
                      "for a single run, marked W), beside its macro F1, per set of test images (validation "
                      "images, said in the panel's title, for runs without a held-out test split); dashed: chance.",
    "forest.png": "Every stated comparison: the difference in test accuracy (dot) with its interval at the family's "
                  "level (bar), grouped by phase; green better, red worse, grey no clear difference (the interval "
                  "crosses zero); the test images of each at the right.",
    "val_curves.png": "Validation accuracy per epoch of every run: the mean over its repeats (and folds), their range shaded.",
    "sweep-": "Each trial's score on the validation images against each swept setting: dots finished, crosses "
              "stopped early (their last score), the star the best.",
    "data-copies": "Groups of copies the data check found (one row a group, at most 5 images shown): each image "
                   "with its class and the part of the split it is in; a row under two classes is a label conflict.",
    "data-labels": "Likely mislabels, the most likely first: each image with the label it has and the one its "
                   "out-of-fold predictions suggest (score: the probability given to its own label).",
    "cam-": "The same test images through each run's Grad-CAM for the class it predicted: the image, then one "
            "column per run.",
}


def caption(path: Path) -> str:
    """The caption of a figure file, by its name (or the prefix of its kind)."""
    name = Path(path).name
    return CAPTIONS.get(name) or next((text for prefix, text in CAPTIONS.items() if name.startswith(prefix)), "")


def is_photo(path: Path) -> bool:
    return Path(path).name.startswith(PHOTO_PLOTS)
