"""The one module that touches Vowpal Wabbit.

``VWModel`` speaks VW text lines in and numpy arrays out. It scores candidates with ``cb_adf``
(score = minus the predicted cost, higher is better) or, when the policy asks for VW's own
exploration, returns ``cb_explore_adf``'s pmf. Learning takes logged bandit feedback: the chosen
action's label is ``cost:probability`` with cost = -reward and the probability it was shown with.
Models serialise to bytes in a small envelope carrying a SHA-256 checksum and the learned-example
count; the checksum covers the header and the VW bytes, so a blob with any byte changed never loads.

Scoring keeps each action line's parsed example (``ParsedActions``, one cache per model, so an
example never meets another workspace) and parses only the shared line per request: VW's
``cb_adf`` adds the shared features to every action for the prediction and removes them after,
so a cached example predicts exactly what its text does. Learning parses text, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import pylibvw
from vowpalwabbit import Workspace

from bandit.errors import ModelError
from bandit.serve.features import labeled
from bandit.serve.vw_args import LOW_RANK_FLAGS, validate_vw_args

MAGIC = b"SERENDIP-VW1\n"
# A parsed VW example holds ~32 KB (a feature array for each of its 256 possible namespaces),
# whatever its features: 1,024 cached actions cost ~32 MB per model, and a request with more
# distinct candidates than the cache holds makes every miss a single-example parse, slower than
# parsing the request's text at once. Measured (docs/performance.md): 1,024 put the rank
# process over its 250 MB target (271 MB), 512 doubled (500, 20)'s p50. So scoring parses text
# unless a model is built with ``parsed_capacity`` (replay and tests may).
PARSED_CAPACITY = 0


class ParsedActions:
    """Parsed examples of recently scored action lines for one workspace, at most ``capacity``.

    Keyed by the line itself, which is all its example depends on; the oldest entry is dropped
    first (as ``bandit.serve.features.ActionLines`` does), so a hit costs one dict lookup. The
    examples are VW allocations of their own (not its example pool), freed once dropped and no
    longer in use.
    """

    def __init__(self, workspace: Workspace, capacity: int = PARSED_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.parses = 0
        self._vw = workspace
        self._label = workspace.get_label_type().value
        self._examples: dict[str, pylibvw.example] = {}

    def __len__(self) -> int:
        return len(self._examples)

    def parse(self, line: str) -> pylibvw.example:
        """A fresh example of ``line``, owned by the caller (never cached)."""
        return pylibvw.example(self._vw, self._label, line)

    def __call__(self, lines: Sequence[str]) -> list[pylibvw.example]:
        """The examples of ``lines`` in order, parsing only the ones not cached."""
        examples = self._examples
        found = examples.get
        out: list[pylibvw.example] = []
        append = out.append
        for line in lines:
            example = found(line)
            if example is None:
                example = self.parse(line)
                self.parses += 1
                if len(examples) >= self.capacity:
                    del examples[next(iter(examples))]
                examples[line] = example
            append(example)
        return out

    def clear(self) -> None:
        """Drop every cached example."""
        self._examples.clear()


class VWModel:
    """A contextual-bandit model over VW text examples.

    >>> model = VWModel(["-q", "CI"])
    >>> model.learn("shared |Cu a=1", ["|I id=x", "|I id=y"], chosen=0, reward=1.0, probability=0.5)
    >>> float(model.score("shared |Cu a=1", ["|I id=x", "|I id=y"]).argmax())
    0.0
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        explore: bool = False,
        parsed_capacity: int = PARSED_CAPACITY,
        _workspace: Workspace | None = None,
        _meta: dict[str, Any] | None = None,
    ) -> None:
        self.args = validate_vw_args(args)
        self.explore = explore
        meta = _meta or {}
        self.examples_learned: int = int(meta.get("examples_learned", 0))
        self.events_learned: int = int(meta.get("events_learned", 0))
        if _workspace is None:
            reduction = "--cb_explore_adf" if explore else "--cb_adf"
            _workspace = Workspace(arg_list=[reduction, "--quiet", *self.args])
        self._vw = _workspace
        # Low-rank quadratics learn in an order set by VW's running count of parsed examples,
        # which predicting from cached examples would no longer advance: those models keep
        # parsing text, so they learn exactly as before. Capacity 0 keeps text too.
        low_rank = any(token in LOW_RANK_FLAGS for token in self.args)
        self.parsed: ParsedActions | None = (
            None if low_rank or parsed_capacity == 0 else ParsedActions(_workspace, parsed_capacity)
        )

    def score(self, shared: str, actions: Sequence[str]) -> np.ndarray:
        """Scores of ``actions`` in order: minus predicted cost, or VW's pmf when exploring."""
        if not actions:
            return np.zeros(0)
        parsed = self.parsed
        if parsed is None or len(set(actions)) != len(actions):
            # One example appearing twice in a multi-example would get the shared features twice.
            values = self._multi([shared, *actions], learn=False)
        else:
            examples = [parsed.parse(shared), *parsed(actions)]
            try:
                pylibvw.vw.predict_multi(self._vw, examples)
            except Exception:
                # VW may have failed with the shared features still attached to the actions.
                parsed.clear()
                raise
            values = examples[0].get_action_scores()
        scores = np.asarray(values, dtype=np.float64)
        return scores if self.explore else -scores

    def _multi(self, lines: Sequence[str], *, learn: bool) -> list[float]:
        """Run one multi-line example through VW's native calls; return the action scores.

        This is what ``Workspace.predict``/``learn`` do with text, without wrapping every line
        in a Python ``Example`` (the wrappers cost several times the prediction itself).
        """
        examples = self._vw._parse("\n".join(lines))
        try:
            if learn:
                pylibvw.vw.learn_multi(self._vw, examples)
            else:
                pylibvw.vw.predict_multi(self._vw, examples)
            return list(examples[0].get_action_scores())
        finally:
            pylibvw.vw._finish_example_multi_ex(self._vw, examples)

    def learn(
        self,
        shared: str,
        actions: Sequence[str],
        *,
        chosen: int,
        reward: float,
        probability: float,
    ) -> None:
        """Learn one logged slot: ``actions[chosen]`` was shown with ``probability``."""
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1], got {probability}")
        lines = [shared, *actions]
        lines[chosen + 1] = labeled(actions[chosen], -float(reward), float(probability))
        self._multi(lines, learn=True)
        self.examples_learned += 1

    def mark_event_learned(self) -> None:
        """Count one closed event as learned (its slots were passed to ``learn``)."""
        self.events_learned += 1

    def to_bytes(self) -> bytes:
        """Serialise the model (weights and learner state) with a checksum envelope."""
        fd, path = tempfile.mkstemp(prefix="serendip-", suffix=".vw")
        os.close(fd)
        try:
            self._vw.save(path)
            with open(path, "rb") as handle:
                blob = handle.read()
        finally:
            os.unlink(path)
        header: dict[str, Any] = {
            "args": self.args,
            "explore": self.explore,
            "examples_learned": self.examples_learned,
            "events_learned": self.events_learned,
            "size": len(blob),
        }
        header["sha256"] = _checksum(header, blob)
        return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + blob

    @classmethod
    def from_bytes(cls, data: bytes, *, parsed_capacity: int = PARSED_CAPACITY) -> VWModel:
        """Load a model written by ``to_bytes``; raise ``ModelError`` if it is not intact."""
        header, blob = read_envelope(data)
        fd, path = tempfile.mkstemp(prefix="serendip-", suffix=".vw")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
            reduction = "--cb_explore_adf" if header["explore"] else "--cb_adf"
            try:
                workspace = Workspace(arg_list=["--quiet", "-i", path])
            except Exception as exc:  # VW raises RuntimeError("Bad model format.") and the like
                raise ModelError(f"VW cannot load the model: {exc}") from exc
            if reduction not in workspace.get_arguments():
                raise ModelError(f"model was not trained with {reduction}")
        finally:
            os.unlink(path)
        return cls(
            header["args"],
            explore=bool(header["explore"]),
            parsed_capacity=parsed_capacity,
            _workspace=workspace,
            _meta=header,
        )

    def close(self) -> None:
        """Release VW's native resources."""
        if self.parsed is not None:
            self.parsed.clear()
        self._vw.finish()


def _checksum(header: dict[str, Any], blob: bytes) -> str:
    """SHA-256 over the header (all fields but ``sha256``, canonical JSON) and the VW bytes."""
    fields = {key: value for key, value in header.items() if key != "sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode() + b"\n" + blob).hexdigest()


def read_envelope(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a model blob into its header and VW bytes, verifying the checksum."""
    if not data.startswith(MAGIC):
        raise ModelError("not a serendip model blob")
    newline = data.find(b"\n", len(MAGIC))
    if newline < 0:
        raise ModelError("model header is truncated")
    raw = data[len(MAGIC) : newline]
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ModelError("model header is not valid JSON") from exc
    # Only the exact bytes ``to_bytes`` writes are accepted, so the checksum covers every byte.
    if not isinstance(header, dict) or json.dumps(header, sort_keys=True).encode() != raw:
        raise ModelError("model header is not in canonical form")
    blob = data[newline + 1 :]
    if len(blob) != header.get("size") or _checksum(header, blob) != header.get("sha256"):
        raise ModelError("model blob failed its checksum")
    if not isinstance(header.get("args"), list) or not isinstance(header.get("explore"), bool):
        raise ModelError("model header lacks args or explore")
    return header, blob


class VWRegressor:
    """A squared-loss VW regression over single-line text features (no label in ``features``).

    Used as a reward model for off-policy evaluation (``bandit.evaluate.reward_model``).

    >>> model = VWRegressor(["-q", "CI"])
    >>> for _ in range(20):
    ...     model.learn("|Cu a=1 |I id=x", 1.0)
    >>> round(model.predict("|Cu a=1 |I id=x"), 1)
    1.0
    """

    def __init__(self, args: Sequence[str] = ()) -> None:
        self.args = validate_vw_args(args)
        self._vw = Workspace(arg_list=["--quiet", *self.args])

    def learn(self, features: str, label: float) -> None:
        """Fit one example: the features' target is ``label``."""
        self._vw.learn(f"{float(label)!r} {features}")

    def predict(self, features: str) -> float:
        """The predicted label of the features."""
        return float(self._vw.predict(features))

    def close(self) -> None:
        """Release VW's native resources."""
        self._vw.finish()
