"""The registered champion as an MLflow model: a pyfunc over the student's ONNX export.

MLflow logs this file itself as the model's code ("models from code"), so serving it needs only
onnxruntime, numpy, pandas and pyarrow, not shopdistill or torch:

    mlflow models serve -m models:/shopdistill-student@champion --env-manager local

Input: a DataFrame with a column ``history``, each row a list of raw product ids, most recent last, of
any length (unknown ids are skipped; only the model's window of the most recent items is read).
Params: ``k`` (10). Output: one row per input row, ``items`` (the top-k raw product ids, items of the
history excluded) and ``scores``.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime as ort
import pandas as pd


class ShoppingGuideModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        folder = Path(context.artifacts["onnx"])
        manifest = json.loads((folder / "export.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / manifest["models"]["fp32"]), options)
        self.max_len = int(manifest["max_len"])
        items = pd.read_parquet(folder / manifest["items"])
        self.raw = items["raw_item_id"].astype(str).to_numpy()  # score column c -> raw id
        self.ids = dict(zip(self.raw, items["item_id"].astype(int), strict=True))  # raw id -> item id

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        rows = [self._encode(h) for h in model_input["history"]]
        batch = np.zeros((len(rows), max([len(r) for r in rows] + [1])), dtype=np.int64)
        for i, r in enumerate(rows):
            batch[i, : len(r)] = r
        scores = self.session.run(["scores"], {"items": batch})[0]  # (B, I)
        out_items, out_scores = [], []
        for i, r in enumerate(rows):
            s = scores[i].copy()
            s[np.asarray(r, dtype=np.int64) - 1] = -np.inf  # what the shopper already saw
            top = np.argsort(-s, kind="stable")[: min(k, int(np.isfinite(s).sum()))]
            out_items.append(self.raw[top].tolist())
            out_scores.append(s[top].astype(float).tolist())
        return pd.DataFrame({"items": out_items, "scores": out_scores})

    def _encode(self, history) -> list[int]:
        known = [self.ids[str(x)] for x in (history if history is not None else []) if str(x) in self.ids]
        return known[-self.max_len :]


mlflow.models.set_model(ShoppingGuideModel())
