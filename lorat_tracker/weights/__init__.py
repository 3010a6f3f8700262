"""Every weight file LoRAT users have, through one resolver (``resolve``) and one build (``build_model``).

Accepted inputs (any combination that makes a complete model):

- DINOv2 backbones: Meta's ``dinov2_vit{b,l,g}14_pretrain.pth`` (torch.save), timm's
  ``vit_{base,large,giant}_patch14_dinov2.lvd142m`` files (safetensors or .pth), converted by timm's
  own ``checkpoint_filter_fn``, and Hugging Face ``transformers`` ``Dinov2Model`` folders
  (``facebook/dinov2-{base,large,giant}``: ``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``), mapped to Meta's layout first.
- LoRAT weights: the released ``.bin`` (a safetensors container: token-type embedding, head, LoRA
  A/B with qkv split into q/k/v, plus the 0-d ``lora_alpha``/``use_rslora`` meta tensors), the newer
  training checkpoints ``model.safetensors`` (same keys, no meta tensors), a full unmerged state dict
  (``...linear.weight`` + ``...lora.A/B``), or an official merged state dict.
- Our own merged export (``export_merged``): a safetensors file with the variant config in its
  metadata that loads with no backbone file.

LoRA is folded into the frozen weights at load (W + (B @ A) * scaling, in float32), so the model is
a plain ViT. Nothing is ever half-loaded: every tensor of the model comes from a file and has the
right shape, or a ``WeightsError`` says what is wrong and what to pass instead. Files are read with
safetensors or ``torch.load(weights_only=True)`` only.

Modules: ``files`` (reading, tensor checks), ``formats`` (``WeightsFormat``, ``classify``), ``info``
(``inspect_weights``), ``convert`` (backbone layouts), ``merge`` (LoRA), ``export`` (merged export,
digest), ``resolve`` (``resolve``, ``instantiate``, ``build_model``).
"""
from .convert import convert_backbone, hf_to_meta
from .export import EXPORT_FORMAT, export_config, export_digest, export_merged
from .files import StateDict, WeightsFile, check_tensors, read_weights_file
from .formats import META_KEYS, WeightsFormat, classify, is_trainable_name
from .info import WeightsInfo, inspect_weights
from .merge import lora_delta, merge_lora
from .resolve import ResolvedWeights, build_model, instantiate, resolve

__all__ = ["EXPORT_FORMAT", "META_KEYS", "ResolvedWeights", "StateDict", "WeightsFile", "WeightsFormat",
           "WeightsInfo", "build_model", "check_tensors", "classify", "convert_backbone", "export_config",
           "export_digest", "export_merged", "hf_to_meta", "inspect_weights", "instantiate", "is_trainable_name",
           "lora_delta", "merge_lora", "read_weights_file", "resolve"]
