"""benchmarks/published_runs.csv read once for both checks that use it: the time model's fit
(validate_time.py) and the runs-that-ran memory check (validate_memory.py). One reading of each row:
its architecture, its layout, and the settings its source leaves unpublished, said here once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from recommender.spec import ModelSpec

CSV = Path(__file__).with_name("published_runs.csv")
MEGATRON_FAMILY = {"mbridge", "nemo2407", "mcore2024", "megatron2021"}  # distributed optimizer by default
PYTORCH_STACK = {"llmfoundry", "torchtitan", "trainy"}  # PyTorch-native FSDP; the rest Megatron-LM / NeMo
# llm-foundry's models default to loss_fn 'fused_crossentropy' (flash-attn's kernel); Megatron-Bridge
# and NeMo recipes may fuse it (cross_entropy_loss_fusion): unpublished there
FUSED_LOSS = {"llmfoundry", "mbridge", "nemo2407", "mcore2024"}
GPT_VOCAB = 51200  # GPT-2's 50,257 padded to a multiple of 128 x TP, as Megatron-LM and NeMo do


def cell(row: dict, key: str, default=None):
    v = row.get(key)
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else v


@dataclass(frozen=True)
class Run:
    """One row: the model, the layout as published, and what the source does not say."""

    row: dict
    spec: ModelSpec
    precision: str
    tp: int
    pp: int
    cp: int
    dp: int
    vp: int
    zero: int
    micro_batch: int
    batch_seqs: float
    recompute: str | None  # None: not published

    @property
    def source(self) -> str:
        return self.row["source_id"]

    @property
    def layout_text(self) -> str:
        return f"TP{self.tp} PP{self.pp} CP{self.cp} DP{self.dp} mb{self.micro_batch}"


def read_run(r: dict) -> Run:
    h, heads = int(r["hidden"]), int(r["heads"])
    ffn = int(cell(r, "ffn", 4 * h))
    seq = int(r["seq_len"])
    spec = ModelSpec(id=f"row{r['row_id']}", name=str(r["model"]), layers=int(r["layers"]), hidden=h, heads=heads,
                     kv_heads=int(cell(r, "kv_heads", heads)), ffn=ffn, vocab=int(cell(r, "vocab", GPT_VOCAB)),
                     seq_len=seq, mlp="gated" if bool(cell(r, "gated_mlp", ffn != 4 * h)) else "plain",
                     tied_embeddings=False, source=r["source"])
    precision = str(cell(r, "precision", "bf16"))
    precision = {"mxfp8": "fp8", "nvfp4": "fp8"}.get(precision, precision)
    tp, pp, cp = int(cell(r, "tp", 1)), int(cell(r, "pp", 1)), int(cell(r, "cp", 1))
    dp = int(cell(r, "dp", r["gpus"] // (tp * pp * cp)))
    mb = int(cell(r, "micro_batch", 1))
    if r["source_id"] == "torchtitan" and pp > 1:
        mb = 1  # torchtitan's pipelined tables give the local batch; its split into micro-batches is unpublished
    return Run(row=r, spec=spec, precision=precision, tp=tp, pp=pp, cp=cp, dp=dp, vp=int(cell(r, "vp", 1)),
               zero=int(cell(r, "zero", 1 if r["source_id"] in MEGATRON_FAMILY else 0)), micro_batch=mb,
               batch_seqs=float(cell(r, "global_batch_seqs", dp * mb)), recompute=cell(r, "recompute"))


def runs() -> list[Run]:
    import pandas as pd

    return [read_run(r) for r in pd.read_csv(CSV).to_dict("records")]
