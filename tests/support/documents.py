"""Documents a hospital sends abroad, built from a synthetic patient by the libraries that
write them: PDFs (fpdf2; reportlab for form fields), images and audio (Pillow, hand-built ID3
tags). Each builder says in its name what it exercises."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from fpdf import FPDF
from PIL import Image, PngImagePlugin

from tests.support.patients import Patient

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def summary_lines(p: Patient) -> list[str]:
    return [
        "DISCHARGE SUMMARY",
        f"Patient: {p.given} {p.family.rstrip('0123456789')}",
        f"MRN: {p.mrn}    DOB: {p.birth_date_iso}    SSN: {p.ssn}",
        f"Address: {p.street}, {p.city}, {p.state} {p.zip}    Phone: {p.phone}",
        "Diagnosis: major depressive disorder, recurrent. Discharged home with follow-up.",
    ]


def _pdf(font: str = "helvetica") -> FPDF:
    pdf = FPDF()
    if font == "dejavu":
        pdf.add_font("dejavu", fname=str(DEJAVU))
    pdf.set_font(font, size=11)
    pdf.add_page()
    return pdf


def discharge_summary_pdf(p: Patient) -> bytes:
    """One page of text in a standard font, Flate-compressed content (fpdf2's default)."""
    pdf = _pdf()
    for line in summary_lines(p):
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def summary_in_pieces_pdf(p: Patient) -> bytes:
    """Every character drawn by its own text operator, at its own position (how some
    reporting tools and kerned layouts write text)."""
    pdf = _pdf()
    y = 20.0
    for line in summary_lines(p):
        x = 10.0
        for char in line:
            pdf.text(x, y, char)
            x += pdf.get_string_width(char)
        y += 8
    return bytes(pdf.output())


def summary_cid_font_pdf(p: Patient) -> bytes:
    """Text in an embedded TrueType font: glyph ids with a ToUnicode map (word processors)."""
    pdf = _pdf("dejavu")
    for line in summary_lines(p):
        pdf.cell(0, 8, line + " — résumé", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def metadata_only_pdf(p: Patient) -> bytes:
    """A clean page whose document information names the patient."""
    pdf = _pdf()
    pdf.cell(0, 8, "Scanned document, see attachment.")
    name = f"{p.given} {p.family.rstrip('0123456789')}"
    pdf.set_title(f"Discharge summary {name} DOB {p.birth_date_iso}")
    pdf.set_subject(f"MRN {p.mrn}")
    return bytes(pdf.output())


def annotated_pdf(p: Patient) -> bytes:
    pdf = _pdf()
    pdf.cell(0, 8, "Coding worklist, page 1.")
    pdf.text_annotation(20, 20, f"Patient: {p.given} {p.family.rstrip('0123456789')}, SSN {p.ssn}")
    return bytes(pdf.output())


def attachment_pdf(p: Patient, attached: bytes, name: str = "summary.pdf") -> bytes:
    """A clean cover page carrying another document as an embedded file."""
    pdf = _pdf()
    pdf.cell(0, 8, "Cover sheet: see the attached file.")
    pdf.embed_file(basename=name, bytes=attached, desc="attached record")
    return bytes(pdf.output())


def encrypted_pdf(p: Patient) -> bytes:
    pdf = _pdf()
    pdf.set_encryption(owner_password="owner-secret", user_password="user-secret")
    for line in summary_lines(p):
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def scanned_pdf() -> bytes:
    """A page that is only a picture of text (no text layer): what a scanner produces."""
    picture = Image.new("L", (850, 1100), 255)
    for y in range(100, 1000, 40):  # grey bars standing in for lines of print
        picture.paste(0, (80, y, 770, y + 12))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    pdf = _pdf()
    pdf.image(io.BytesIO(buffer.getvalue()), x=0, y=0, w=210)
    return bytes(pdf.output())


def many_pages_pdf(pages: int) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for number in range(pages):
        pdf.add_page()
        pdf.cell(0, 8, f"Page {number + 1}")
    return bytes(pdf.output())


def text_pages_pdf(pages: int) -> bytes:
    """A long clean document: a policy manual (the speed benchmark's payload)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    paragraph = (
        "Hand hygiene compliance is audited monthly on every unit. Staff perform hand "
        "hygiene before and after each contact, after removing gloves, and before aseptic "
        "tasks. Results are posted on the unit board and reviewed by the infection "
        "prevention committee. "
    )
    for number in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 5, f"Section {number + 1}\n" + paragraph * 12)
    return bytes(pdf.output())


def brochure_pdf() -> bytes:
    pdf = _pdf()
    for line in (
        "Spring Wellness Fair",
        "Free blood pressure checks in the main lobby, 9:00 to 15:00 on Friday.",
        "Flu shots for staff and visitors; bring your badge.",
    ):
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    pdf.set_title("Wellness fair brochure")
    return bytes(pdf.output())


def form_pdf(p: Patient | None) -> bytes:
    """An AcroForm face sheet (reportlab): labels on the page, values in the fields. With no
    patient, a blank form."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    form = page.acroForm
    values = {
        "patient_name": f"{p.given} {p.family.rstrip('0123456789')}" if p else "",
        "dob": p.birth_date_iso if p else "",
        "mrn": p.mrn if p else "",
    }
    y = 760
    for name, value in values.items():
        page.drawString(40, y + 5, name.replace("_", " ").title())
        form.textfield(name=name, value=value, x=160, y=y, width=250, height=20)
        y -= 40
    page.save()
    return buffer.getvalue()


# -- images and audio ---------------------------------------------------------------------------
def photo_png(comment: str = "") -> bytes:
    info = PngImagePlugin.PngInfo()
    if comment:
        info.add_text("Comment", comment)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 180, 160)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def photo_jpeg_exif(description: str) -> bytes:
    image = Image.new("RGB", (16, 16), (90, 120, 150))
    exif = image.getexif()
    exif[0x010E] = description  # ImageDescription
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def photo_jpeg_iptc(caption: str) -> bytes:
    """A JPEG whose IPTC caption (2:120, in a Photoshop APP13 segment, as photo desks write
    it; Pillow reads IPTC but writes none, so the segment is built here) holds ``caption``."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    text = caption.encode()
    iptc = b"\x1c\x02\x78" + struct.pack(">H", len(text)) + text
    block = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    app13 = b"Photoshop 3.0\x00" + block + b"\x00" * (len(iptc) % 2)
    return jpeg[:2] + b"\xff\xed" + struct.pack(">H", len(app13) + 2) + app13 + jpeg[2:]


def dictation_mp3(title: str) -> bytes:
    """An ID3v2.3 tag with a title frame, then one silent MPEG frame header."""
    text = b"\x00" + title.encode("latin-1")
    frame = b"TIT2" + len(text).to_bytes(4, "big") + b"\x00\x00" + text
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + frame + b"\xff\xfb\x90\x00" + b"\x00" * 413


# -- e-mail, HTML, RTF ----------------------------------------------------------------------
def _name(p: Patient) -> str:
    return f"{p.given} {p.family.rstrip('0123456789')}"


def email_with_attachment(subject: str, text: str, attachment: bytes, filename: str) -> bytes:
    """An e-mail as a mail client writes it (the email package): a text body, and a file
    attached in base64."""
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "him@hospital.example"
    message["To"] = "coding@vendor.example"
    message["Subject"] = subject
    message.set_content(text)
    message.add_attachment(
        attachment, maintype="application", subtype="octet-stream", filename=filename
    )
    return message.as_bytes()


def html_email(p: Patient) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "him@hospital.example"
    message["To"] = "transcription@vendor.example"
    message["Subject"] = "Dictation follow-up"
    message.set_content("See the HTML part.")
    message.add_alternative(html_face_sheet(p).decode(), subtype="html")
    return message.as_bytes()


def html_face_sheet(p: Patient) -> bytes:
    return (
        "<!DOCTYPE html><html><head><title>Face sheet</title>"
        "<style>td { padding: 2px }</style></head><body><table>"
        f"<tr><td>Patient</td><td>{_name(p)}</td></tr>"
        f"<tr><td><b>SSN</b></td><td>{p.ssn}</td></tr>"
        f"<tr><td>Date&nbsp;of&nbsp;birth</td><td>{p.birth_date_iso}</td></tr>"
        "</table></body></html>"
    ).encode()


def marketing_page() -> bytes:
    return (
        b"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Open house</title>"
        b"<script>window.dataLayer = [];</script></head><body><h1>Open house</h1>"
        b"<p>Join us on Saturday for tours of the new birthing center &amp; cafe.<br>"
        b"Free parking in garage B.</p></body></html>"
    )


def rtf_letter(p: Patient | None) -> bytes:
    body = (
        rf"Re: {_name(p)}\par Date of birth: {p.birth_date_iso}\par SSN {p.ssn}\par"
        if p
        else r"The staff meeting moves to Thursday at 10:00 in room 4B.\par"
    )
    return (
        r"{\rtf1\ansi\deff0{\fonttbl{\f0\fswiss Helvetica;}}{\colortbl;\red0\green0\blue0;}"
        r"{\info{\title Letter}{\author Medical records}}\f0\fs22 " + body + "}"
    ).encode("latin-1")


# -- office documents (python-docx, openpyxl, python-pptx, odfpy) ---------------------------
def docx_face_sheet(p: Patient | None) -> bytes:
    """A face sheet: labels and values in different cells of a table, a value split over
    runs, the author in the document properties, the MRN in the header."""
    from docx import Document

    document = Document()
    document.add_heading("Face sheet" if p else "Visitor parking", level=1)
    table = document.add_table(rows=0, cols=2)
    rows = (
        [("Patient name", _name(p)), ("Date of birth", p.birth_date_iso), ("SSN", p.ssn)]
        if p
        else [("Garage", "B"), ("Hours", "6:00 to 22:00")]
    )
    for label, value in rows:
        cells = table.add_row().cells
        cells[0].text = label
        paragraph = cells[1].paragraphs[0]
        half = len(value) // 2
        paragraph.add_run(value[:half])
        paragraph.add_run(value[half:]).bold = True  # one value, two runs
    if p:
        document.sections[0].header.paragraphs[0].text = f"MRN: {p.mrn}"
        document.core_properties.author = _name(p)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def xlsx_worklist(p: Patient | None) -> bytes:
    """A coding worklist: a header row naming the columns, dates stored as serial numbers."""
    import datetime as dt

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["mrn", "last_name", "first_name", "dob", "cpt"] if p else ["item", "count"])
    if p:
        birth = dt.date.fromisoformat(p.birth_date_iso)
        sheet.append([p.mrn, p.family.rstrip("0123456789"), p.given, birth, "99213"])
        sheet.cell(row=2, column=4).number_format = "mm/dd/yyyy"
    else:
        sheet.append(["gloves", 300])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def pptx_case_review(p: Patient | None) -> bytes:
    """A case review deck: the patient only in the speaker notes."""
    from pptx import Presentation

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Case review" if p else "Quarterly goals"
    slide.placeholders[1].text = "Sepsis bundle timing" if p else "Reduce wait times"
    if p:
        slide.notes_slide.notes_text_frame.text = f"Patient: {_name(p)}, MRN {p.mrn}"
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def odt_letter(p: Patient | None) -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.text import P

    document = OpenDocumentText()
    lines = (
        [f"Re: {_name(p)}", f"Date of birth: {p.birth_date_iso}", f"SSN {p.ssn}"]
        if p
        else ["The library is closed on Monday."]
    )
    for line in lines:
        document.text.addElement(P(text=line))
    buffer = io.BytesIO()
    document.write(buffer)
    return buffer.getvalue()


def _picture_of_text(lines: list[str], size: tuple[int, int] = (1700, 2200)) -> Image.Image:
    """A page as a scanner sees it: black print on white, at about 200 dpi, no text layer."""
    from PIL import ImageDraw, ImageFont

    picture = Image.new("L", size, 255)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.truetype(str(DEJAVU), 30) if DEJAVU.is_file() else ImageFont.load_default(30)
    for number, line in enumerate(lines):
        draw.text((110, 120 + 56 * number), line, font=font, fill=0)
    return picture


MEMO_LINES = [
    "FACILITIES NOTICE",
    "The east parking garage closes for resurfacing on Saturday.",
    "Staff should use the west garage and the shuttle from the main lobby.",
    "Questions go to the facilities help desk.",
]


def scanned_page_png(p: Patient | None) -> bytes:
    """A scanned page as a PNG: the patient's discharge summary, or (None) a facilities memo."""
    buffer = io.BytesIO()
    _picture_of_text(summary_lines(p) if p is not None else MEMO_LINES).save(buffer, "PNG")
    return buffer.getvalue()


def scanned_pages_pdf(*pages: Patient | None) -> bytes:
    """A scanner's PDF: one picture per page (a summary for a patient, a memo for None)."""
    pdf = FPDF()
    for p in pages:
        pdf.add_page()
        pdf.image(io.BytesIO(scanned_page_png(p)), x=0, y=0, w=210)
    return bytes(pdf.output())


def photo_without_text() -> bytes:
    """A photograph stand-in: smooth colour, no print anywhere."""
    picture = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG")
    return buffer.getvalue()


def long_summary_pdf(p: Patient, pages: int) -> bytes:
    """A long clean document whose last page is the patient's summary."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for number in range(pages - 1):
        pdf.add_page()
        pdf.multi_cell(0, 5, f"Section {number + 1}\nInfection prevention rounds. " * 20)
    pdf.add_page()
    for line in summary_lines(p):
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
