"""Local text generation with transformers: ``hf:ID_OR_DIR[#gguf=FILE]``.

The kind comes from the model's config: an image-text-to-text model (LLaVA, Idefics, Qwen2-VL, ...) is
loaded with ``AutoModelForImageTextToText`` and its ``AutoProcessor`` and reads images; any other causal
LM with ``AutoModelForCausalLM`` and its tokenizer (a GGUF file is dequantised by transformers). The chat
template of the tokenizer or processor formats the messages when there is one. One model serves one
request at a time (a lock), so the job runner's threads queue here instead of fighting over the CPU/GPU.
A text-only model decoding greedily serves the queued requests in batches instead (prompts padded on the
left; the same replies as one at a time, tests check it); sampling and images stay one request at a time,
so a seed still fixes one reply.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from densecaption.errors import UserError
from densecaption.generation.backends import (BackendError, BackendOptions, GeneratorSpec, ImageInput, Prompt,
                                              TextBackend, as_messages)
from densecaption.models.weights import transformers_source


BATCH_SIZE = 8
"""Greedy text-only requests decoded together at most (the job runner runs this many threads)."""


@dataclass
class _Pending:
    """A queued greedy request: the leader that takes it into a batch fills ``reply`` or ``error``."""

    messages: list[dict[str, Any]]
    max_tokens: int
    reply: str | None = None
    error: BackendError | None = None
    done: threading.Event = field(default_factory=threading.Event)


class LocalBackend(TextBackend):
    """A transformers causal LM or image-text-to-text model on this machine."""

    max_parallel = 1

    def __init__(self, module, *, tokenizer=None, processor=None, spec: str, name: str, weights: str,
                 device: str, options: BackendOptions):
        self.module = module.eval().to(device)
        """The transformers model (``model`` is its name, as recorded in outputs)."""
        self.tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
        self.processor = processor
        self.reads_images = processor is not None
        self.spec = spec
        self.model = name
        self.weights = weights
        self.device = device
        self.options = options
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self.batches: list[int] = []
        """The size of each batch run (for tests and measurements)."""
        if not self.reads_images and options.temperature == 0:
            self.max_parallel = BATCH_SIZE

    def generate(self, prompt: Prompt, *, max_tokens: int, images: Sequence[ImageInput] | None = None,
                 seed: int | None = None) -> str:
        import torch

        if images and not self.reads_images:
            raise BackendError(f"{self.spec}: a text-only model reads no images", retryable=False)
        messages = as_messages(prompt)
        if self.max_parallel > 1 and not images:
            return self._generate_batched(_Pending(messages, max_tokens))
        with self._lock:
            try:
                inputs = (self._vision_inputs(messages, images or []) if self.reads_images
                          else self._text_inputs(messages))
                inputs = {k: self._placed(v) for k, v in inputs.items()}
                kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": self._pad_id()}
                if self.options.temperature > 0:
                    if seed is not None:
                        torch.manual_seed(seed)
                    kwargs.update(do_sample=True, temperature=self.options.temperature)
                    if self.options.top_p is not None:
                        kwargs["top_p"] = self.options.top_p
                else:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                with torch.inference_mode():
                    out = self.module.generate(**inputs, **kwargs)
            except BackendError:
                raise
            except (RuntimeError, ValueError, TypeError) as e:
                raise BackendError(f"local generation failed: {type(e).__name__}: {first_line(e)}",
                                   retryable=False) from e
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def _generate_batched(self, item: _Pending) -> str:
        """Queue ``item``; the thread that gets the model next runs it with the other queued requests of the
        same length limit (up to ``BATCH_SIZE``), so requests arriving while a batch runs share the next one."""
        with self._queue_lock:
            self._queue.append(item)
        with self._lock:
            if not item.done.is_set():  # no earlier leader took it: lead a batch
                with self._queue_lock:
                    batch = [item] + [p for p in self._queue
                                      if p is not item and p.max_tokens == item.max_tokens][:BATCH_SIZE - 1]
                    for p in batch:
                        self._queue.remove(p)
                self._run_batch(batch)
        if item.error is not None:
            raise item.error
        return item.reply  # type: ignore[return-value]

    def _run_batch(self, batch: list[_Pending]) -> None:
        """Greedy generation for ``batch`` at once: each prompt's ids padded on the left (decoder-only models
        continue from the last position), the attention mask hiding the padding. Fills every item."""
        import torch

        try:
            rows = [self._text_inputs(p.messages) for p in batch]
            ids = [r["input_ids"][0] for r in rows]
            width = max(len(i) for i in ids)
            pad = self._pad_id()
            pad = 0 if pad is None else pad
            input_ids = torch.full((len(ids), width), pad, dtype=ids[0].dtype)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for n, row in enumerate(ids):
                input_ids[n, width - len(row):] = row
                mask[n, width - len(row):] = 1
            with torch.inference_mode():
                out = self.module.generate(input_ids=self._placed(input_ids), attention_mask=self._placed(mask),
                                           max_new_tokens=batch[0].max_tokens, pad_token_id=self._pad_id(),
                                           do_sample=False, temperature=None, top_p=None, top_k=None)
            self.batches.append(len(batch))
            for n, p in enumerate(batch):
                p.reply = self.tokenizer.decode(out[n, width:], skip_special_tokens=True)
        except (RuntimeError, ValueError, TypeError) as e:
            error = BackendError(f"local generation failed: {type(e).__name__}: {first_line(e)}", retryable=False)
            for p in batch:
                p.error = error
        finally:
            for p in batch:
                p.done.set()

    def _placed(self, value: Any) -> Any:
        """An input on the model's device; pixel values (floating point) also in the model's dtype."""
        import torch

        if not isinstance(value, torch.Tensor):
            return value
        if torch.is_floating_point(value):
            return value.to(self.device, dtype=self.module.dtype)
        return value.to(self.device)

    def _pad_id(self) -> int | None:
        tok = self.tokenizer
        return next((i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None), None)

    def _text_inputs(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Token ids of the chat (the tokenizer's chat template, or the contents one per paragraph)."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return dict(apply_template(tok, messages))
        text = "\n\n".join(str(m.get("content", "")) for m in messages) + "\n\n"
        return dict(tok(text, return_tensors="pt"))

    def _vision_inputs(self, messages: list[dict[str, Any]], images: Sequence[ImageInput]) -> dict[str, Any]:
        """Processor inputs: the images open the last user message, as image parts of its content."""
        pictures = [open_image(i) for i in images]
        chat = [{"role": m.get("role", "user"),
                 "content": ([{"type": "text", "text": m["content"]}] if isinstance(m.get("content"), str)
                             else list(m.get("content") or []))} for m in messages]
        users = [i for i, m in enumerate(chat) if m["role"] == "user"] or [len(chat) - 1]
        chat[users[-1]]["content"] = [{"type": "image"} for _ in pictures] + chat[users[-1]]["content"]
        processor = self.processor
        if getattr(processor, "chat_template", None):
            text = apply_template(processor, chat, tokenize=False)
        else:
            token = getattr(processor, "image_token", "<image>")
            text = " ".join([token] * len(pictures) + [p["text"] for m in chat for p in m["content"]
                                                       if p.get("type") == "text"])
        return dict(processor(images=pictures or None, text=text, return_tensors="pt"))

    def close(self) -> None:
        self.module = None


def apply_template(owner, messages: list[dict[str, Any]], *, tokenize: bool = True):
    """``apply_chat_template`` with the generation prompt; a template that refuses a system role gets the
    system text folded into the first user message instead."""
    kwargs = {"add_generation_prompt": True, "tokenize": tokenize}
    if tokenize:
        kwargs.update(return_tensors="pt", return_dict=True)
    try:
        return owner.apply_chat_template(messages, **kwargs)
    except Exception as e:  # jinja2's TemplateError ("System role not supported") and the like
        system = [m for m in messages if m.get("role") == "system"]
        if not system:
            raise
        rest = [dict(m) for m in messages if m.get("role") != "system"]
        head = "\n\n".join(str(m["content"]) for m in system if isinstance(m.get("content"), str))
        first = next((m for m in rest if m.get("role") == "user"), None)
        if first is None or not head:
            raise e
        if isinstance(first["content"], str):
            first["content"] = f"{head}\n\n{first['content']}"
        else:
            first["content"] = [{"type": "text", "text": head + "\n\n"}] + list(first["content"])
        return owner.apply_chat_template(rest, **kwargs)


def open_image(image: ImageInput):
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                return im.convert("RGB")
        except OSError as e:
            raise BackendError(f"cannot read image {image}: {e}", retryable=False) from e
    return image.convert("RGB")


def model_kind(config) -> str:
    """``vision`` for an image-text-to-text model, ``causal`` for a causal LM (from the config's model_type)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)

    kind = getattr(config, "model_type", None)
    if kind in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return "vision"
    if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    raise UserError(f"model_type {kind!r} is neither a causal language model nor an image-text-to-text model")


def load_local(parsed: GeneratorSpec, *, spec: str, options: BackendOptions) -> LocalBackend:
    unknown = set(parsed.options) - {"gguf"}
    if unknown:
        raise UserError(f"model spec {spec!r}: unknown option(s) {', '.join(sorted(unknown))} (known: gguf)")
    target, gguf = parsed.target, parsed.options.get("gguf")
    resolved = transformers_source(target, label=f"model spec {spec!r}", gguf=gguf, gguf_ok=True)
    source, weights = resolved.path_or_id, resolved.weights
    import torch
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor,
                              AutoTokenizer)

    from densecaption.models.registry import resolve_device

    device = resolve_device(options.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {options.device}: no CUDA device is available here (use cpu)")
    dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    extra = {"gguf_file": gguf} if gguf is not None else {}
    try:
        config = AutoConfig.from_pretrained(source, **extra)
        kind = model_kind(config)
        if kind == "vision":
            processor = AutoProcessor.from_pretrained(source, **extra)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, **extra)
            backend = LocalBackend(model, processor=processor, spec=spec, name=target, weights=weights,
                                   device=device, options=options)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, **extra)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
            backend = LocalBackend(model, tokenizer=tokenizer, spec=spec, name=target, weights=weights,
                                   device=device, options=options)
    except UserError as e:
        raise UserError(f"model spec {spec!r}: {e}") from e
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as e:
        if resolved.is_local:
            raise UserError(f"model spec {spec!r}: could not load a text generator from the folder "
                            f"({first_line(e)})") from e
        raise UserError(f"model spec {spec!r}: could not load a text generator from the hub id "
                        f"({first_line(e)}). Without network access, download the model elsewhere and give "
                        f"its local folder (hf:DIR, with #gguf=FILE for a GGUF file).") from e
    return backend


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
