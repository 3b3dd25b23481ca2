"""Optical character recognition of images and scanned PDF pages, with Debian's tesseract-ocr
(installed by ``scripts/install-ocr.sh``; off unless ``ocr.enabled``). Runs in a document
worker process only (``gateway.workers``): Pillow decodes the pixels and PDFium renders the
pages there, and tesseract runs as that worker's child, killed with it.

Bounded: at most ``max_pages`` frames or pages per payload, each decoded to at most
``max_pixels``, the whole within ``seconds``; what is left unread stays content nobody sees
into (the answer says how many were read). The answer is the text of each page read: the
gateway judges it like any text."""

from __future__ import annotations

import ctypes
import io
import os
import shutil
import signal
import subprocess
import time
from typing import Any

from gateway.errors import PayloadError

TESSERACT = "tesseract"
_PR_SET_PDEATHSIG = 1


class OcrError(PayloadError):
    """OCR could not run (no tesseract, a page it failed on, its time): the text stays
    unread."""


def ocr_problem(languages: str) -> str:
    """Why OCR cannot run with these languages here ("" when it can): for check-config."""
    binary = shutil.which(TESSERACT)
    if binary is None:
        return "tesseract is not installed (apt-get install tesseract-ocr)"
    try:
        listed = subprocess.run(
            [binary, "--list-langs"], capture_output=True, timeout=10, check=False
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired):
        return "tesseract does not run"
    lines = listed.splitlines()  # a heading ("List of available languages ..."), then one each
    installed = {line.strip() for line in lines[1:]}
    missing = [name for name in languages.split("+") if name not in installed]
    if missing:
        return f"tesseract has no language pack for {', '.join(missing)} (tesseract-ocr-<lang>)"
    return ""


def ocr_image(data: bytes, args: dict[str, Any]) -> dict[str, Any]:
    """The text of each frame of an image (a multi-page TIFF has several)."""
    from PIL import Image

    deadline = time.monotonic() + float(args["seconds"])
    texts: list[str] = []
    Image.MAX_IMAGE_PIXELS = None  # bounded below, before any pixel is decoded
    with Image.open(io.BytesIO(data)) as image:
        frames = int(getattr(image, "n_frames", 1))
        for index in range(min(frames, int(args["max_pages"]))):
            image.seek(index)
            width, height = image.size
            if width * height > int(args["max_pixels"]):
                return {"texts": texts, "frames": frames, "too_large": True}
            texts.append(_recognize(_png(image), args, deadline))
    return {"texts": texts, "frames": frames}


def ocr_pdf_pages(data: bytes, args: dict[str, Any]) -> dict[str, Any]:
    """The text of the given pages (1-based) of a PDF, rendered at ``dpi``."""
    import pypdfium2 as pdfium

    deadline = time.monotonic() + float(args["seconds"])
    scale = float(args["dpi"]) / 72
    texts: list[str] = []
    pdf = pdfium.PdfDocument(data)
    try:
        for number in [int(n) for n in args["pages"]][: int(args["max_pages"])]:
            page = pdf[number - 1]
            try:
                width, height = page.get_size()
                if width * scale * height * scale > int(args["max_pixels"]):
                    return {"texts": texts, "too_large": True}
                bitmap = page.render(scale=scale, grayscale=True)
                texts.append(_recognize(_png(bitmap.to_pil()), args, deadline))
            finally:
                page.close()
    finally:
        pdf.close()
    return {"texts": texts}


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.convert("L").save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _recognize(png: bytes, args: dict[str, Any], deadline: float) -> str:
    binary = shutil.which(TESSERACT)
    if binary is None:
        raise OcrError("tesseract is not installed (scripts/install-ocr.sh)")
    left = deadline - time.monotonic()
    if left <= 0:
        raise OcrError("OCR took longer than ocr.max_seconds", "ocr.max_seconds")
    try:
        done = subprocess.run(
            [binary, "stdin", "stdout", "-l", str(args["languages"]), "--psm", "3"],
            input=png,
            capture_output=True,
            timeout=left,
            env={"PATH": os.environ.get("PATH", "/usr/bin"), "OMP_THREAD_LIMIT": "1"},
            preexec_fn=_die_with_parent,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OcrError("OCR took longer than ocr.max_seconds", "ocr.max_seconds") from None
    if done.returncode != 0:
        raise OcrError(f"tesseract failed (exit {done.returncode})")
    return done.stdout.decode("utf-8", "replace")


def _die_with_parent() -> None:
    """In the child: a worker killed for its deadline takes its tesseract with it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
