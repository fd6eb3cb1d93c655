"""Pydantic models of everything the catalog or a user states: models, accelerators, prices,
assumptions and one training configuration.

Primary fields only are stored; derived values (head_dim, parameter counts, KV bytes per token)
are computed here, once, as properties.
"""

from __future__ import annotations

import functools
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Precision = Literal["fp32", "bf16", "fp16", "fp8"]
Method = Literal["full", "lora", "qlora"]
Recompute = Literal["none", "selective", "full"]
Acquisition = Literal["on_demand", "spot", "reserved", "serverless", "buy"]
# serverless: per-second billing of a GPU that is not held between requests (Modal, Replicate,
# RunPod Serverless); about twice a pod's hourly rate, so it is a tier of its own, chosen only
# when asked for.
Tier = Literal["on_demand", "spot", "reserved", "serverless"]
Currency = Literal["USD", "CNY", "EUR"]
# where a price holds: the global market; China's domestic market (its clouds, its channel prices
# for parts sold there); second-hand cards (never chosen on its own: listed, not planned with)
Market = Literal["global", "china", "used"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_CACHED = ("total_params", "active_params", "matmul_params", "block_linear_params", "layer_params_dense",
           "layer_params_moe", "layer_params_moe_active", "attention_params_per_layer", "embedding_params",
           "routed_expert_params")  # derived sizes computed once per instance (functools.cached_property)


class ModelSpec(Strict):
    """A transformer's architecture (decoder, or BERT-style encoder), dense or MoE, MHA/GQA/MQA/MLA."""

    id: str
    name: str
    aliases: list[str] = []
    family: str = "custom"
    architecture: Literal["decoder", "encoder"] = "decoder"
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    ffn: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int | None = None
    vocab: int = Field(gt=0)
    seq_len: int = Field(gt=0)  # the longest context the model takes (max_position_embeddings)
    # the sequence length of the main pre-training stage as published: the training default
    pretrain_seq_len: int | None = Field(None, gt=0)
    pretrain_seq_len_source: str = ""
    mlp: Literal["gated", "plain"] = "gated"
    tied_embeddings: bool = False
    # trained with dropout (GPT-2/3, OPT, BERT: 0.1); modern LLMs (Llama, Qwen, Mistral, MPT) use none,
    # and then no dropout masks are stored (Korthikanti's 2*s*b*h per layer, and s^2 under eager attention)
    dropout: bool = False
    position: Literal["rope", "learned", "alibi", "relative"] = "rope"
    qkv_bias: bool = False
    linear_bias: bool = False
    # mixture of experts
    experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    moe_ffn: int | None = None
    dense_layers: int = 0
    expert_node_limit: int | None = None  # node/group-limited routing: a token's experts on <= M nodes
    # multi-head latent attention (DeepSeek-V2/V3)
    attention: Literal["standard", "mla"] = "standard"
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    published_params_b: float | None = None
    published_active_params_b: float | None = None
    source: str = "user input"
    as_of: date | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        from recommender.errors import GpuplanError

        if self.heads % self.kv_heads:
            raise GpuplanError("kv-heads", self.kv_heads, f"must divide heads ({self.heads})")
        if self.head_dim is None and self.hidden % self.heads:
            raise GpuplanError("heads", self.heads, f"must divide hidden ({self.hidden})")
        if self.experts and not (0 < self.experts_per_token <= self.experts and self.moe_ffn):
            raise GpuplanError("experts_per_token", self.experts_per_token,
                               "a MoE model needs 0 < experts_per_token <= experts and moe_ffn")
        if self.attention == "mla" and None in (self.kv_lora_rank, self.qk_rope_head_dim,
                                                self.qk_nope_head_dim, self.v_head_dim):
            raise GpuplanError("attention", "mla", "needs kv_lora_rank, qk_rope_head_dim, "
                               "qk_nope_head_dim and v_head_dim")
        return self

    def model_copy(self, *, update=None, deep: bool = False):
        """A copy whose derived sizes are computed afresh (they are cached per instance)."""
        out = super().model_copy(update=update, deep=deep)
        for name in _CACHED:
            out.__dict__.pop(name, None)
        return out

    # -- derived shape ---------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    @functools.cached_property
    def attention_params_per_layer(self) -> int:
        """Q, K, V, O projections (+ biases); MLA: its low-rank down/up projections and norms."""
        h, a = self.hidden, self.heads
        if self.attention == "mla":
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * a * qk
            else:
                q = h * a * qk
            kv = (h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
                  + self.kv_lora_rank * a * (self.qk_nope_head_dim + self.v_head_dim))
            return q + kv + a * self.v_head_dim * h
        d, kv = self.dim_head, self.kv_heads
        weights = h * a * d + 2 * h * kv * d + a * d * h
        bias = (a * d + 2 * kv * d) * (self.qkv_bias or self.linear_bias) + h * self.linear_bias
        return weights + bias

    def _mlp_params(self, inner: int) -> int:
        mats = 3 if self.mlp == "gated" else 2
        return mats * self.hidden * inner + (inner + self.hidden) * self.linear_bias

    @property
    def dense_mlp_params(self) -> int:
        return self._mlp_params(self.ffn)

    @property
    def expert_params(self) -> int:
        """One routed (or shared) expert's FFN."""
        return self._mlp_params(self.moe_ffn) if self.is_moe else 0

    @property
    def norm_params_per_layer(self) -> int:
        return 2 * self.hidden * (2 if self.linear_bias else 1)  # two norms (+ LayerNorm bias)

    @functools.cached_property
    def embedding_params(self) -> int:
        """Input embedding, untied output head, learned positions (BERT: + token types)."""
        emb = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        if self.position == "learned":
            emb += self.seq_len * self.hidden
        if self.architecture == "encoder":
            emb += 2 * self.hidden + self.hidden * self.hidden + self.hidden  # token types, pooler
        return emb

    @functools.cached_property
    def layer_params_dense(self) -> int:
        return self.attention_params_per_layer + self.dense_mlp_params + self.norm_params_per_layer

    @functools.cached_property
    def layer_params_moe(self) -> int:
        """A MoE layer with all its experts, the shared ones and the router."""
        return (self.attention_params_per_layer + self.norm_params_per_layer
                + (self.experts + self.shared_experts) * self.expert_params + self.hidden * self.experts)

    @functools.cached_property
    def layer_params_moe_active(self) -> int:
        return (self.attention_params_per_layer + self.norm_params_per_layer
                + (self.experts_per_token + self.shared_experts) * self.expert_params
                + self.hidden * self.experts)

    @functools.cached_property
    def total_params(self) -> int:
        dense_layers = self.layers - self.moe_layers
        return (dense_layers * self.layer_params_dense + self.moe_layers * self.layer_params_moe
                + self.embedding_params + self.hidden)

    @functools.cached_property
    def active_params(self) -> int:
        """Parameters touched per token: routed top-k plus shared experts for MoE (= total if dense)."""
        if not self.is_moe:
            return self.total_params
        dense_layers = self.layers - self.moe_layers
        return (dense_layers * self.layer_params_dense + self.moe_layers * self.layer_params_moe_active
                + self.embedding_params + self.hidden)

    @property
    def attention_width(self) -> int:
        """H*Q in PaLM's attention-FLOPs term: heads x head size (MLA: mean of QK and V sizes)."""
        if self.attention == "mla":
            return self.heads * (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim) // 2
        return self.heads * self.dim_head

    @functools.cached_property
    def matmul_params(self) -> int:
        """Active parameters that take part in matrix multiplies: all but the input embedding
        lookup and learned positions (a tied embedding still counts once, as the output head)."""
        lookup = 0 if self.tied_embeddings else self.vocab * self.hidden
        if self.position == "learned":
            lookup += self.seq_len * self.hidden
        return self.active_params - lookup

    @property
    def kv_dim_per_layer(self) -> int:
        """Elements cached per token per layer: 2 * kv_heads * head_dim (MLA: latent + rope key)."""
        if self.attention == "mla":
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_heads * self.dim_head

    @functools.cached_property
    def routed_expert_params(self) -> int:
        """All routed experts' weights: the part expert parallelism shards (shared experts are not)."""
        return self.moe_layers * self.experts * self.expert_params

    def attention_maps(self) -> list[tuple[int, int]]:
        """(in, out) of every linear map in one layer's attention."""
        h, a = self.hidden, self.heads
        if self.attention == "mla":
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = [(h, self.q_lora_rank), (self.q_lora_rank, a * qk)] if self.q_lora_rank else [(h, a * qk)]
            return q + [(h, self.kv_lora_rank + self.qk_rope_head_dim),
                        (self.kv_lora_rank, a * (self.qk_nope_head_dim + self.v_head_dim)),
                        (a * self.v_head_dim, h)]
        d, kv = self.dim_head, self.kv_heads
        return [(h, a * d), (h, kv * d), (h, kv * d), (a * d, h)]

    def mlp_maps(self, inner: int) -> list[tuple[int, int]]:
        """(in, out) of an MLP's linear maps: gate and up (gated) or up, then down."""
        return [(self.hidden, inner)] * (2 if self.mlp == "gated" else 1) + [(inner, self.hidden)]

    def lora_params(self, rank: int, active: bool = False) -> int:
        """LoRA adapters on every linear map of every layer (attention and MLP/experts, as the QLoRA
        paper does, Dettmers et al. 2023 Sec. 4): r * (d_in + d_out) per map (Hu et al. 2021, Sec. 4.1).
        `active`: only the experts a token is routed to (MoE)."""
        width = lambda maps: sum(i + o for i, o in maps)  # noqa: E731
        attn = width(self.attention_maps())
        dense = self.layers - self.moe_layers
        total = dense * (attn + width(self.mlp_maps(self.ffn)))
        if self.is_moe:
            experts = (self.experts_per_token if active else self.experts) + self.shared_experts
            total += self.moe_layers * (attn + experts * width(self.mlp_maps(self.moe_ffn)))
        return rank * total

    def lora_routed_params(self, rank: int) -> int:
        """The adapters on routed experts: the part of `lora_params` expert parallelism shards."""
        return rank * self.moe_layers * self.experts * sum(i + o for i, o in self.mlp_maps(self.moe_ffn or 1))

    @functools.cached_property
    def block_linear_params(self) -> int:
        """Weights of the transformer blocks' linear maps: what 4-bit quantization (QLoRA) stores in
        NF4. Embeddings, output head, norms and routers stay 16-bit."""
        other = (self.embedding_params + self.hidden + self.layers * self.norm_params_per_layer
                 + self.moe_layers * self.hidden * self.experts)
        return self.total_params - other

    def kv_bytes_per_token(self, bytes_per_element: float = 2.0) -> float:
        """KV cache per token: 2 * layers * kv_heads * head_dim * bytes (vLLM, Kwon et al. 2023)."""
        return self.layers * self.kv_dim_per_layer * bytes_per_element


class Accelerator(Strict):
    """One accelerator's published figures (dense peaks, per chip or package). Empty = unpublished."""

    id: str
    name: str
    vendor: str
    aliases: list[str] = []
    memory_gib: float | None = None
    memory_bw_gb_s: float | None = None
    fp32_tflops: float | None = None
    tf32_tflops: float | None = None
    bf16_tflops: float | None = None
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    int4_tops: float | None = None
    gpus_per_node: int | None = None
    # accelerators joined by the scale-up fabric (NVLink/NVSwitch, Infinity Fabric, HCCS, TPU ICI):
    # 8 on an HGX board, 72 in a GB200 NVL72 rack, a whole TPU pod slice; empty = one node
    scale_up_domain: int | None = Field(None, ge=1)
    intra_node_bw_gb_s: float | None = None
    inter_node_bw_gb_s: float | None = None
    tdp_w: float | None = None
    fp16_only: bool = False  # 16-bit tensor cores run fp16 only (no bf16): bf16_tflops holds fp16
    source: str
    as_of: date
    notes: str = ""

    @property
    def node(self) -> int:
        """Accelerators in one server (the unit machines are bought and rented in)."""
        return self.gpus_per_node or 1

    @property
    def domain(self) -> int:
        """Accelerators reached over the scale-up links (intra_node_bw_gb_s): a node, unless a
        source gives a larger NVLink / ICI domain (GB200 NVL72: 72; a TPU v5p pod: 8,960)."""
        return max(self.scale_up_domain or self.node, self.node)

    @property
    def max_span(self) -> int | None:
        """The most accelerators one job can be timed on: any number where a scale-out figure is
        published; else its scale-up domain. The one rule `evaluate`, `train` and `serve` share."""
        return None if self.inter_node_bw_gb_s is not None else self.domain

    def span_problem(self, count: int) -> str | None:
        """Why `count` accelerators cannot be timed, in the words every command uses; None if they can."""
        if self.intra_node_bw_gb_s is None and self.inter_node_bw_gb_s is None and count > 1:
            return f"{self.id} has no published interconnect bandwidth: only 1 GPU can be timed"
        if self.max_span is not None and count > self.max_span:
            return (f"{self.id} has no published inter-node bandwidth: at most {self.max_span} GPUs "
                    f"({'its scale-up domain' if self.domain > self.node else 'one node'}) can be timed")
        return None

    def peak_tflops(self, precision: str) -> float | None:
        if precision == "bf16" and self.fp16_only:
            return None
        return {"fp32": self.fp32_tflops, "tf32": self.tf32_tflops, "bf16": self.bf16_tflops,
                "fp16": self.bf16_tflops, "fp8": self.fp8_tflops, "int8": self.int8_tops,
                "int4": self.int4_tops}.get(precision)


def _in_usd(data, usd_field: str):
    """A row published in another currency ('price' + 'currency') gets its USD figure from the
    catalog's dated exchange rate (catalog/fx.yaml); the published figure is kept beside it."""
    if not isinstance(data, dict) or data.get(usd_field) is not None or data.get("price") is None:
        return data
    from recommender import money

    data = dict(data)
    data[usd_field] = money.to_usd(float(data["price"]), data.get("currency", "USD"))
    return data


# the prices gpuplan accepts, from any source (catalog rows, imports, a user's file, a scenario, a
# flag): a bound far outside every published figure (catalog: $0.06-18 per GPU-hour, $200-150k per
# GPU bought), so a typo or 1e300 is refused rather than priced
CLOUD_PRICE_RANGE_USD = (0.001, 1000.0)  # per GPU-hour
PURCHASE_PRICE_RANGE_USD = (10.0, 1e6)   # per GPU, its share of the server included


class CloudPrice(Strict):
    accelerator: str
    provider: str
    tier: Tier
    region: str = ""
    term_months: int | None = None
    price_usd_per_gpu_hour: float = Field(ge=CLOUD_PRICE_RANGE_USD[0], le=CLOUD_PRICE_RANGE_USD[1], allow_inf_nan=False)
    price: float | None = Field(None, gt=0, allow_inf_nan=False)  # as published, in `currency`
    currency: Currency = "USD"
    market: Market = "global"
    source: str
    as_of: date
    # "published": the date the price was stated; "read": the date a copy of unknown date was read
    # (the price may be older: answers say so)
    as_of_kind: Literal["published", "read"] = "published"
    notes: str = ""

    @model_validator(mode="before")
    @classmethod
    def _convert(cls, data):
        return _in_usd(data, "price_usd_per_gpu_hour")


class PurchasePrice(Strict):
    accelerator: str
    price_usd_per_gpu: float | None = Field(None, ge=PURCHASE_PRICE_RANGE_USD[0], le=PURCHASE_PRICE_RANGE_USD[1],
                                            allow_inf_nan=False)
    price: float | None = Field(None, gt=0, allow_inf_nan=False)  # as published, in `currency`
    currency: Currency = "USD"
    basis: Literal["gpu_only", "system_per_gpu"]
    market: Market = "global"
    lead_time_days: float | None = None
    source: str
    as_of: date
    notes: str = ""

    @model_validator(mode="before")
    @classmethod
    def _convert(cls, data):
        return _in_usd(data, "price_usd_per_gpu")


class Efficiency(Strict):
    """Achievable fraction of dense peak for transformer training compute on one accelerator."""

    accelerator: str
    family: str | None = None  # the fitted family whose error band applies (catalog/time_bands.csv)
    matmul_efficiency: float = Field(gt=0, le=1)
    # PyTorch-native stacks' efficiency relative to Megatron / TE on this family (fitted where both
    # stacks published runs on it; 1 where no run says otherwise)
    pytorch_ratio: float = Field(1.0, gt=0, le=1.5)
    calibrated: bool
    basis: str
    source: str
    as_of: date


class Assumption(Strict):
    value: float
    unit: str
    source: str
    as_of: date
    notes: str = ""


class TrainLayout(Strict):
    """One fixed training configuration: the decisions the planner makes."""

    accelerator: str
    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    vp: int = Field(1, ge=1)  # virtual pipeline stages per GPU (interleaved 1F1B)
    dp: int = Field(1, ge=1)
    cp: int = Field(1, ge=1)  # context parallelism: each sequence split over cp GPUs (ring attention)
    ep: int = Field(1, ge=1)  # expert parallelism (MoE): experts split over ep of the dp ranks
    ep_overlap: bool = False  # all-to-all hidden behind the other micro-batch's compute (DualPipe)
    zero: int = Field(1, ge=0, le=3)
    recompute: Recompute = "selective"
    micro_batch: int = Field(1, ge=1)
    precision: Precision = "bf16"
    acquisition: Acquisition = "on_demand"
    provider: str | None = None

    @property
    def count(self) -> int:
        return self.tp * self.pp * self.dp * self.cp


class TrainJob(Strict):
    """What is trained: the model, tokens, global batch (tokens), and how: every weight (pre-training
    or full fine-tuning, which is training from a checkpoint) or low-rank adapters on a frozen
    base held in 16 bits (LoRA) or in 4-bit NF4 (QLoRA)."""

    model: ModelSpec
    tokens: float = Field(gt=0)
    global_batch_tokens: float = Field(gt=0)
    seq_len: int = Field(gt=0)
    method: Method = "full"
    lora_rank: int = Field(16, ge=1)
    # attention kernel: FlashAttention / fused SDPA (no s^2 scores stored) or eager (scores stored)
    attention: Literal["flash", "eager"] = "flash"
    # the loss: standard (PyTorch cross_entropy on fp32 logits) or fused / chunked (never holds fp32 logits)
    loss: Literal["standard", "fused"] = "standard"
    # ZeRO-3 / FSDP gradient accumulation: reduce-scatter each micro-batch's gradients (DeepSpeed,
    # Megatron, torchtitan) or accumulate them unsharded and reduce once a step (FSDP's no_sync:
    # Lightning Fabric / litgpt, Hugging Face Accelerate's default)
    grad_sync: Literal["micro-batch", "step"] = "micro-batch"
    # QLoRA's 4-bit base: bitsandbytes NF4 with double-quantized block constants (the QLoRA
    # paper's) or plain (an fp32 constant per 64 weights), or torchao's NF4 (torchtune: double-
    # quantized constants, and its linear keeps no input for the backward pass)
    quant: Literal["nf4-dq", "nf4", "torchao-nf4"] = "nf4-dq"
    # the training stack's kernels: megatron (Megatron-LM / NeMo / Transformer Engine fused kernels) or
    # pytorch (PyTorch-native FSDP stacks: torchtitan, llm-foundry, Hugging Face); None = the default
    # for the method (megatron for pre-training, pytorch for fine-tuning)
    stack: Literal["megatron", "pytorch"] | None = None

    @property
    def kernels(self) -> str:
        return self.stack or ("megatron" if self.method == "full" else "pytorch")

    @property
    def adapter_params(self) -> int:
        return 0 if self.method == "full" else self.model.lora_params(self.lora_rank)

    @property
    def adapter_params_active(self) -> int:
        return 0 if self.method == "full" else self.model.lora_params(self.lora_rank, active=True)

    @property
    def global_batch_seqs(self) -> int:
        return max(1, round(self.global_batch_tokens / self.seq_len))
