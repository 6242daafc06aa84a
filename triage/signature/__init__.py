"""Crash signatures (Socorro-style): ``generate(report, annotations) -> Result``.

``explain`` renders how a signature was built, frame by frame, for ``crashd signature``.
The heuristics are the list files in ``siglists/``; docs/signatures.md describes the rules.
"""

from triage.signature.explain import explain
from triage.signature.generator import VERSION, Result, generate, trace
from triage.signature.siglists import SigLists, default_siglists, load_siglists

__all__ = ["VERSION", "Result", "SigLists", "default_siglists", "explain", "generate", "load_siglists", "trace"]
