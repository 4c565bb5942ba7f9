/*
 * The upload's CSV parser in C: UTF-8 bytes in, batch_inputs' binary COPY tuples out.
 *
 * It does what webapp/upload/csv_reader.py's pure-Python path does (the incremental UTF-8
 * decoder, the cut into CR / LF / CRLF lines, csv.reader(strict=True) and the row rules of
 * csv_rows), in the same order, so that every file gives the same rows and the same first
 * refusal: tests/unit/test_fastcsv.py compares the two on arbitrary bytes cut anywhere. It
 * never makes a Python object per row: the Python path (csv.reader, the checks, psycopg's
 * write_row) spends about 6 us of CPU per row, more than PostgreSQL spends on the row's COPY;
 * this one about 0.4 us.
 *
 * The order of events per piece is the Python path's:
 *   1. the piece is decoded whole (an invalid byte anywhere in it is refused first);
 *   2. the unfinished line at its end is measured (longer than max_line_chars: refused);
 *   3. the lines it completes are parsed, record by record, and each record is a row.
 * finish() then refuses an incomplete UTF-8 sequence, parses the last line and refuses a
 * quoted field still open. Whole-file refusals raise Refusal(kind, line, ...), which
 * csv_reader.py turns into the same Problem as its own path; the header goes to a Python
 * callable (the rules for its names live there only).
 *
 * Output tuples: (batch_id int8, row_number int4, line_number int4, client_id text, text text,
 * problem text or NULL, fields text[] or NULL); rows to score are numbered 1, 2, ..., set-aside
 * rows -1, -2, ..., and a set-aside row has an empty text, "reason<TAB>detail" and no fields
 * (core/batches/ingest.py). fields holds the values of the kept columns, the ones the header
 * callable returns as its optional third item, in that order; NULL when it keeps none. Each
 * block holds whole tuples, without the COPY signature or trailer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *Refusal;

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int
buf_reserve(Buf *b, Py_ssize_t extra)
{
    if (extra <= b->cap - b->len) {
        return 0;
    }
    Py_ssize_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap - b->len < extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline void
put_bytes(Buf *b, const void *p, Py_ssize_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void
put_u16(Buf *b, uint16_t v)
{
    unsigned char *p = (unsigned char *)b->data + b->len;
    p[0] = v >> 8;
    p[1] = v;
    b->len += 2;
}

static inline void
put_u32(Buf *b, uint32_t v)
{
    unsigned char *p = (unsigned char *)b->data + b->len;
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
    b->len += 4;
}

static inline void
put_u64(Buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)(v >> 32));
    put_u32(b, (uint32_t)v);
}

/* csv.reader's states (Modules/_csv.c), for the dialect csv_rows uses: delimiter ',',
   quotechar '"', doublequote, no escapechar, strict. */
enum { START_RECORD, START_FIELD, IN_FIELD, IN_QUOTED_FIELD, QUOTE_IN_QUOTED_FIELD, EAT_CRNL };

typedef struct {
    Py_ssize_t start, len, chars; /* bytes in rec (if kept), characters */
    int nul, nonspace;            /* holds a NUL; holds a character that str.isspace() rejects */
} Field;

typedef struct {
    PyObject_HEAD
    /* options */
    int64_t batch_id;
    PyObject *on_header;
    Py_ssize_t field_limit, max_line_chars, max_text_chars, max_id_chars, kept_id_chars;
    Py_ssize_t max_kept_chars; /* longest value of a kept column */
    Py_ssize_t problems_listed;
    int64_t max_rows;
    int strict;

    /* bytes received and not parsed yet: the unfinished line, and a piece's new bytes */
    Buf in;
    int64_t offset;          /* position in the file of in.data[0] */
    Py_ssize_t valid_end;    /* in.data[:valid_end] is valid UTF-8 made of whole characters */
    int64_t newlines;        /* LF bytes in the file before in.data[valid_end] */
    Py_ssize_t scanned_end;  /* line ends are looked for from here on (none before) */
    Py_ssize_t tail_chars;   /* characters of the unfinished line, counted up to scanned_end */
    int bom_done, finished, broken;

    /* csv */
    int state;
    int64_t line_num;   /* physical lines ended so far (csv.reader's line_num) */
    int64_t done_lines; /* line_num when the last record ended */
    Buf rec;            /* bytes of the kept fields of the record being read */
    Field cur;
    int keep_cur;
    Py_ssize_t nfields;
    Field *header_fields;
    Py_ssize_t header_cap;
    Field id_field, text_field;
    int has_id, has_text;

    /* rows */
    int header_done;
    Py_ssize_t width, id_index, text_index; /* id_index -1: no id column */
    Py_ssize_t *kept, nkept; /* the kept columns' indexes, in the order fields holds them */
    Field *row_fields;       /* with kept columns: every field of the record being read */
    int64_t rows, valid, invalid;
    PyObject *problems;
    Buf out;
} Reader;

/* ---- refusals ---------------------------------------------------------------------------- */

static int64_t
record_line(Reader *r)
{
    /* csv_rows names the line where the record being read starts; before the header, line 1. */
    return r->header_done ? r->done_lines + 1 : 1;
}

static int
refuse(const char *kind, PyObject *args_tail)
{
    if (args_tail == NULL) {
        return -1;
    }
    PyObject *head = Py_BuildValue("(s)", kind);
    if (head == NULL) {
        Py_DECREF(args_tail);
        return -1;
    }
    PyObject *args = PySequence_Concat(head, args_tail);
    Py_DECREF(head);
    Py_DECREF(args_tail);
    if (args != NULL) {
        PyErr_SetObject(Refusal, args);
        Py_DECREF(args);
    }
    return -1;
}

static int
refuse_csv(Reader *r, const char *message)
{
    return refuse("csv", Py_BuildValue("(Ls)", (long long)record_line(r), message));
}

/* ---- UTF-8 --------------------------------------------------------------------------------- */

#define IS_CONT(c) (((c) & 0xC0) == 0x80)

/*
 * Validate s[from:len] as CPython's incremental UTF-8 decoder does (Objects/stringlib/codecs.h
 * and unicode_decode_utf8). Returns the end of the whole characters; an incomplete sequence
 * after it is left for the next piece, as the decoder keeps it (a valid prefix, and the
 * decoder's one quirk: ED A0..BF at the very end waits too). *bad is the position of the
 * first invalid sequence, or -1. With final, an incomplete sequence is invalid.
 */
static Py_ssize_t
utf8_check(const unsigned char *s, Py_ssize_t from, Py_ssize_t len, int final, Py_ssize_t *bad)
{
    Py_ssize_t i = from;
    *bad = -1;
    while (i < len) {
        while (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) {
                break;
            }
            i += 8;
        }
        if (i >= len) {
            break;
        }
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        Py_ssize_t avail = len - i;
        if (c < 0xC2) {
            goto invalid;
        }
        if (c < 0xE0) {
            if (avail < 2) {
                goto incomplete;
            }
            if (!IS_CONT(s[i + 1])) {
                goto invalid;
            }
            i += 2;
            continue;
        }
        if (c < 0xF0) {
            if (avail >= 2) {
                unsigned c1 = s[i + 1];
                if (!IS_CONT(c1) || (c1 < 0xA0 ? c == 0xE0 : c == 0xED)) {
                    if (!final && avail == 2 && c == 0xED && IS_CONT(c1)) {
                        goto incomplete; /* a surrogate's first two bytes: CPython waits */
                    }
                    goto invalid;
                }
            }
            if (avail < 3) {
                goto incomplete;
            }
            if (!IS_CONT(s[i + 2])) {
                goto invalid;
            }
            i += 3;
            continue;
        }
        if (c < 0xF5) {
            if (avail >= 2) {
                unsigned c1 = s[i + 1];
                if (!IS_CONT(c1) || (c1 < 0x90 ? c == 0xF0 : c == 0xF4)) {
                    goto invalid;
                }
                if (avail >= 3 && !IS_CONT(s[i + 2])) {
                    goto invalid;
                }
            }
            if (avail < 4) {
                goto incomplete;
            }
            if (!IS_CONT(s[i + 3])) {
                goto invalid;
            }
            i += 4;
            continue;
        }
    invalid:
        *bad = i;
        return i;
    incomplete:
        if (final) {
            *bad = i;
        }
        return i;
    }
    return i;
}

static inline Py_ssize_t
count_chars(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t chars = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        chars += !IS_CONT(s[i]);
    }
    return chars;
}

static inline Py_ssize_t
count_byte(const unsigned char *s, Py_ssize_t n, unsigned char b)
{
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        count += s[i] == b;
    }
    return count;
}

/* str.isspace() for one character (Py_UNICODE_ISSPACE: bidirectional WS, B or S, or Zs). */
static int
is_space(uint32_t c)
{
    switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D:
    case 0x1C: case 0x1D: case 0x1E: case 0x1F: case 0x20:
    case 0x85: case 0xA0: case 0x1680:
    case 0x2000: case 0x2001: case 0x2002: case 0x2003: case 0x2004: case 0x2005:
    case 0x2006: case 0x2007: case 0x2008: case 0x2009: case 0x200A:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return 0;
    }
}

/* Whether s[:n] (whole, valid UTF-8 characters) holds a character that is not whitespace. */
static int
has_nonspace(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        uint32_t cp;
        if (c < 0x80) {
            cp = c;
            i += 1;
        }
        else if (c < 0xE0) {
            cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
            i += 2;
        }
        else if (c < 0xF0) {
            cp = ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
            i += 3;
        }
        else {
            return 1; /* no whitespace outside the BMP */
        }
        if (!is_space(cp)) {
            return 1;
        }
    }
    return 0;
}

/* ---- rows ---------------------------------------------------------------------------------- */

/* n with thousands separators, as Python's f"{n:,}". */
static int
format_thousands(char *out, int64_t n)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)n);
    int neg = digits[0] == '-';
    int first = neg ? 1 : 0, k = 0;
    if (neg) {
        out[k++] = '-';
    }
    for (int i = first; i < len; i++) {
        out[k++] = digits[i];
        int left = len - i - 1;
        if (left > 0 && left % 3 == 0) {
            out[k++] = ',';
        }
    }
    out[k] = '\0';
    return k;
}

static int
put_tuple_head(Reader *r, int64_t row_number, int64_t line, Py_ssize_t extra)
{
    if (line > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "line number out of the range of int4");
        return -1;
    }
    if (buf_reserve(&r->out, 2 + 12 + 8 + 8 + 16 + extra) < 0) {
        return -1;
    }
    put_u16(&r->out, 7);
    put_u32(&r->out, 8);
    put_u64(&r->out, (uint64_t)r->batch_id);
    put_u32(&r->out, 4);
    put_u32(&r->out, (uint32_t)(int32_t)row_number);
    put_u32(&r->out, 4);
    put_u32(&r->out, (uint32_t)(int32_t)line);
    return 0;
}

static int
emit_valid(Reader *r, int64_t line, const char *id, Py_ssize_t id_len, const char *text,
           Py_ssize_t text_len)
{
    /* fields: a one-dimensional text[] in PostgreSQL's binary array format (20 bytes of header,
       then each element's length and bytes) */
    Py_ssize_t array_len = 20;
    for (Py_ssize_t k = 0; k < r->nkept; k++) {
        array_len += 4 + r->row_fields[r->kept[k]].len;
    }
    if (array_len > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a row's kept columns are too long");
        return -1;
    }
    if (put_tuple_head(r, r->valid + 1, line, id_len + text_len + array_len) < 0) {
        return -1;
    }
    r->valid++;
    put_u32(&r->out, (uint32_t)id_len);
    put_bytes(&r->out, id, id_len);
    put_u32(&r->out, (uint32_t)text_len);
    put_bytes(&r->out, text, text_len);
    put_u32(&r->out, 0xFFFFFFFFu); /* problem: NULL */
    if (r->nkept == 0) {
        put_u32(&r->out, 0xFFFFFFFFu); /* fields: NULL */
        return 0;
    }
    put_u32(&r->out, (uint32_t)array_len);
    put_u32(&r->out, 1);  /* dimensions */
    put_u32(&r->out, 0);  /* no NULL element */
    put_u32(&r->out, 25); /* element type: text */
    put_u32(&r->out, (uint32_t)r->nkept);
    put_u32(&r->out, 1); /* lower bound */
    for (Py_ssize_t k = 0; k < r->nkept; k++) {
        const Field *f = &r->row_fields[r->kept[k]];
        put_u32(&r->out, (uint32_t)f->len);
        put_bytes(&r->out, r->rec.data + f->start, f->len);
    }
    return 0;
}

static int
set_aside(Reader *r, int64_t line, const char *id, Py_ssize_t id_len, const char *reason,
          const char *detail)
{
    if (r->strict) {
        return refuse("invalid-row", Py_BuildValue("(Ls)", (long long)line, detail));
    }
    if (PyList_GET_SIZE(r->problems) < r->problems_listed) {
        PyObject *listed = PyUnicode_FromFormat("line %lld: %s", (long long)line, detail);
        if (listed == NULL || PyList_Append(r->problems, listed) < 0) {
            Py_XDECREF(listed);
            return -1;
        }
        Py_DECREF(listed);
    }
    /* The id is kept for people to find the row: its first kept_id_chars characters, a NUL
       shown as U+2400 (PostgreSQL text cannot hold NUL). */
    const unsigned char *s = (const unsigned char *)id;
    Py_ssize_t kept = 0, chars = 0, nuls = 0;
    while (kept < id_len) {
        if (!IS_CONT(s[kept])) {
            if (chars == r->kept_id_chars) {
                break;
            }
            chars++;
        }
        nuls += s[kept] == 0;
        kept++;
    }
    Py_ssize_t reason_len = strlen(reason), detail_len = strlen(detail);
    Py_ssize_t kept_len = kept + 2 * nuls;
    Py_ssize_t problem_len = reason_len + 1 + detail_len;
    if (put_tuple_head(r, -(r->invalid + 1), line, kept_len + problem_len) < 0) {
        return -1;
    }
    r->invalid++;
    put_u32(&r->out, (uint32_t)kept_len);
    for (Py_ssize_t i = 0; i < kept; i++) {
        if (s[i] == 0) {
            put_bytes(&r->out, "\xe2\x90\x80", 3);
        }
        else {
            r->out.data[r->out.len++] = (char)s[i];
        }
    }
    put_u32(&r->out, 0); /* text: empty */
    put_u32(&r->out, (uint32_t)problem_len);
    put_bytes(&r->out, reason, reason_len);
    r->out.data[r->out.len++] = '\t';
    put_bytes(&r->out, detail, detail_len);
    put_u32(&r->out, 0xFFFFFFFFu); /* fields: NULL */
    return 0;
}

/* One data row: csv_rows' checks, in its order (webapp/upload/csv_reader.py, _row). */
static int
data_row(Reader *r, int64_t line)
{
    r->rows++;
    if (r->rows > r->max_rows) {
        return refuse("too-many-rows", Py_BuildValue("(L)", (long long)line));
    }
    char digits[24];
    const char *id;
    Py_ssize_t id_len, id_chars;
    int id_nul;
    if (r->id_index < 0) { /* no id column: the line number is the id */
        id_len = id_chars = snprintf(digits, sizeof digits, "%lld", (long long)line);
        id = digits;
        id_nul = 0;
    }
    else if (r->has_id) {
        id = r->rec.data + r->id_field.start;
        id_len = r->id_field.len;
        id_chars = r->id_field.chars;
        id_nul = r->id_field.nul;
    }
    else {
        id = "";
        id_len = id_chars = 0;
        id_nul = 0;
    }
    char detail[160], a[32], b[32];
    if (r->nfields != r->width) {
        snprintf(detail, sizeof detail, "expected %zd fields as in the header, found %zd", r->width,
                 r->nfields);
        return set_aside(r, line, id, id_len, "wrong_field_count", detail);
    }
    /* A kept value past its limit refuses the file; a NUL in one sets the row aside. */
    int kept_nul = 0;
    for (Py_ssize_t k = 0; k < r->nkept; k++) {
        const Field *f = &r->row_fields[r->kept[k]];
        if (f->chars > r->max_kept_chars) {
            return refuse("kept-too-long",
                          Py_BuildValue("(Lnn)", (long long)line, k, f->chars));
        }
        kept_nul |= f->nul;
    }
    const Field *text = &r->text_field;
    if (text->chars > 0 && text->chars <= r->max_text_chars && text->nonspace && !text->nul
        && !id_nul && !kept_nul && id_chars <= r->max_id_chars) {
        return emit_valid(r, line, id, id_len, r->rec.data + text->start, text->len);
    }
    if (text->nul || id_nul || kept_nul) {
        return set_aside(r, line, id, id_len, "nul_character", "the row contains a NUL character");
    }
    if (id_chars > r->max_id_chars) {
        format_thousands(a, id_chars);
        format_thousands(b, r->max_id_chars);
        snprintf(detail, sizeof detail, "the id has %s characters; the limit is %s", a, b);
        return set_aside(r, line, id, id_len, "id_too_long", detail);
    }
    if (text->chars == 0 || !text->nonspace) {
        return set_aside(r, line, id, id_len, "empty_text", "the text is empty");
    }
    format_thousands(a, text->chars);
    format_thousands(b, r->max_text_chars);
    snprintf(detail, sizeof detail, "the text has %s characters; the limit is %s", a, b);
    return set_aside(r, line, id, id_len, "text_too_long", detail);
}

/* The kept columns (a sequence of indexes into the header), and room for a record's fields. */
static int
set_kept(Reader *r, PyObject *kept)
{
    PyObject *seq = PySequence_Fast(kept, "the kept columns must be a sequence of indexes");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 0) {
        r->kept = PyMem_New(Py_ssize_t, n);
        r->row_fields = PyMem_New(Field, r->nfields);
        if (r->kept == NULL || r->row_fields == NULL) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t index = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, k));
        if (index == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        if (index < 0 || index >= r->nfields) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_IndexError, "a kept column's index is outside the header");
            return -1;
        }
        r->kept[k] = index;
    }
    r->nkept = n;
    Py_DECREF(seq);
    return 0;
}

static int
header_row(Reader *r)
{
    PyObject *names = PyList_New(r->nfields);
    if (names == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < r->nfields; i++) {
        const Field *f = &r->header_fields[i];
        PyObject *name = PyUnicode_DecodeUTF8(r->rec.data + f->start, f->len, "strict");
        if (name == NULL) {
            Py_DECREF(names);
            return -1;
        }
        PyList_SET_ITEM(names, i, name);
    }
    PyObject *result = PyObject_CallOneArg(r->on_header, names);
    Py_DECREF(names);
    if (result == NULL) {
        return -1;
    }
    PyObject *id_index, *kept = NULL;
    Py_ssize_t text_index;
    if (!PyArg_ParseTuple(result, "On|O", &id_index, &text_index, &kept)) {
        Py_DECREF(result);
        return -1;
    }
    r->id_index = id_index == Py_None ? -1 : PyLong_AsSsize_t(id_index);
    if (r->id_index == -1 && PyErr_Occurred()) {
        Py_DECREF(result);
        return -1;
    }
    if (kept != NULL && set_kept(r, kept) < 0) {
        Py_DECREF(result);
        return -1;
    }
    Py_DECREF(result);
    r->text_index = text_index;
    r->width = r->nfields;
    r->header_done = 1;
    return 0;
}

/* ---- csv.reader ---------------------------------------------------------------------------- */

static inline void
begin_field(Reader *r)
{
    r->cur.start = r->rec.len;
    r->cur.len = r->cur.chars = 0;
    r->cur.nul = r->cur.nonspace = 0;
    r->keep_cur = !r->header_done || r->nkept > 0 || r->nfields == r->id_index
                  || r->nfields == r->text_index;
}

static int
save_field(Reader *r)
{
    if (!r->header_done) {
        if (r->nfields == r->header_cap) {
            Py_ssize_t cap = r->header_cap ? 2 * r->header_cap : 16;
            Field *fields = PyMem_Realloc(r->header_fields, cap * sizeof(Field));
            if (fields == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            r->header_fields = fields;
            r->header_cap = cap;
        }
        r->header_fields[r->nfields] = r->cur;
        r->nfields++;
        return 0;
    }
    if (r->nkept > 0 && r->nfields < r->width) {
        r->row_fields[r->nfields] = r->cur;
    }
    if (r->nfields == r->text_index) {
        r->text_field = r->cur;
        r->has_text = 1;
    }
    else if (r->nfields == r->id_index) {
        r->id_field = r->cur;
        r->has_id = 1;
    }
    r->nfields++;
    return 0;
}

/* Characters s[:n] (whole UTF-8 characters) added to the field being read. */
static int
add_chars(Reader *r, const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t chars = count_chars(s, n);
    if (chars > r->field_limit - r->cur.chars) {
        char message[64];
        snprintf(message, sizeof message, "field larger than field limit (%zd)", r->field_limit);
        return refuse_csv(r, message);
    }
    r->cur.chars += chars;
    if (r->keep_cur) {
        if (buf_reserve(&r->rec, n) < 0) {
            return -1;
        }
        put_bytes(&r->rec, s, n);
        r->cur.len += n;
        if (!r->cur.nul && memchr(s, 0, n) != NULL) {
            r->cur.nul = 1;
        }
        if (!r->cur.nonspace) {
            r->cur.nonspace = has_nonspace(s, n);
        }
    }
    return 0;
}

/* The record being read has ended: it is the header, a data row or a blank line. */
static int
record_done(Reader *r)
{
    int64_t start = r->done_lines + 1;
    r->done_lines = r->line_num;
    if (r->nfields == 0) {
        return 0; /* a blank line */
    }
    return r->header_done ? data_row(r, start) : header_row(r);
}

static inline void
begin_record(Reader *r)
{
    r->nfields = 0;
    r->rec.len = 0;
    r->has_id = r->has_text = 0;
}

/* The end of a physical line (csv.reader's EOL, after the line's last character). */
static int
end_line(Reader *r)
{
    r->line_num++;
    switch (r->state) {
    case START_FIELD: /* after a comma, at the end of the file's last line: an empty field */
        begin_field(r);
        /* fall through */
    case IN_FIELD:
    case QUOTE_IN_QUOTED_FIELD:
        if (save_field(r) < 0) {
            return -1;
        }
        /* fall through */
    case START_RECORD:
    case EAT_CRNL:
        r->state = START_RECORD;
        return record_done(r);
    default: /* IN_QUOTED_FIELD: the field goes on on the next line */
        return 0;
    }
}

/* In an unquoted field, these end a run of ordinary characters. */
static unsigned char UNQUOTED_STOP[256];

/*
 * Parse s[:end], whole lines (each ends with CR, LF or CRLF; a CR at s[end - 1] ends its line).
 * With at_eof, s[:end] is the file's last line, which may have no line end.
 */
static int
parse(Reader *r, const unsigned char *s, Py_ssize_t end, int at_eof)
{
    Py_ssize_t i = 0;
    while (i < end) {
        unsigned char c = s[i];
        switch (r->state) {
        case START_RECORD:
            begin_record(r);
            if (c == '\n' || c == '\r') {
                r->state = EAT_CRNL;
                break;
            }
            r->state = START_FIELD;
            /* fall through */
        case START_FIELD:
            begin_field(r);
            if (c == '\n' || c == '\r') {
                if (save_field(r) < 0) {
                    return -1;
                }
                r->state = EAT_CRNL;
                break;
            }
            if (c == '"') {
                r->state = IN_QUOTED_FIELD;
                i++;
                continue;
            }
            if (c == ',') {
                if (save_field(r) < 0) {
                    return -1;
                }
                i++;
                continue;
            }
            r->state = IN_FIELD;
            /* fall through */
        case IN_FIELD: {
            Py_ssize_t j = i;
            while (j < end && !UNQUOTED_STOP[s[j]]) {
                j++;
            }
            if (j > i && add_chars(r, s + i, j - i) < 0) {
                return -1;
            }
            i = j;
            if (i == end) {
                continue;
            }
            c = s[i];
            if (save_field(r) < 0) {
                return -1;
            }
            if (c == ',') {
                r->state = START_FIELD;
                i++;
                continue;
            }
            r->state = EAT_CRNL;
            break;
        }
        case IN_QUOTED_FIELD: {
            const unsigned char *quote = memchr(s + i, '"', end - i);
            Py_ssize_t j = quote ? quote - s : end;
            if (j > i) {
                /* Line ends inside the field are characters of it, and lines all the same. */
                Py_ssize_t n = j - i, lf = count_byte(s + i, n, '\n'), cr = count_byte(s + i, n, '\r');
                if (cr) {
                    for (Py_ssize_t k = i; k + 1 < j; k++) {
                        cr -= s[k] == '\r' && s[k + 1] == '\n';
                    }
                }
                if (add_chars(r, s + i, n) < 0) {
                    return -1;
                }
                r->line_num += lf + cr;
            }
            i = j;
            if (quote) {
                r->state = QUOTE_IN_QUOTED_FIELD;
                i++;
            }
            continue;
        }
        case QUOTE_IN_QUOTED_FIELD:
            if (c == '"') { /* "" in a quoted field is one " */
                if (add_chars(r, s + i, 1) < 0) {
                    return -1;
                }
                r->state = IN_QUOTED_FIELD;
                i++;
                continue;
            }
            if (c == ',') {
                if (save_field(r) < 0) {
                    return -1;
                }
                r->state = START_FIELD;
                i++;
                continue;
            }
            if (c == '\n' || c == '\r') {
                if (save_field(r) < 0) {
                    return -1;
                }
                r->state = EAT_CRNL;
                break;
            }
            return refuse_csv(r, "',' expected after '\"'");
        case EAT_CRNL:
            if (c == '\n' || c == '\r') {
                break;
            }
            return refuse_csv(r, "new-line character seen in unquoted field - do you need to "
                                 "open the file with newline=''?");
        }
        /* s[i] is a CR or LF outside a quoted field: does its line end here? */
        i++;
        if (c == '\n' || i == end || s[i] != '\n') {
            if (end_line(r) < 0) {
                return -1;
            }
        }
    }
    if (at_eof && end > 0 && s[end - 1] != '\n' && s[end - 1] != '\r') {
        return end_line(r);
    }
    return 0;
}

/* ---- the Reader type ----------------------------------------------------------------------- */

static PyObject *
take_output(Reader *r)
{
    PyObject *block = PyBytes_FromStringAndSize(r->out.data, r->out.len);
    r->out.len = 0;
    return block;
}

static int
usable(Reader *r)
{
    if (r->broken || r->finished) {
        PyErr_SetString(PyExc_RuntimeError, "this reader has failed or finished");
        return 0;
    }
    return 1;
}

static int
refuse_undecodable(Reader *r, Py_ssize_t from, Py_ssize_t bad)
{
    const unsigned char *s = (const unsigned char *)r->in.data;
    int64_t line = r->newlines + count_byte(s + from, bad - from, '\n') + 1;
    return refuse("undecodable", Py_BuildValue("(LLi)", (long long)line, (long long)(r->offset + bad),
                                               (int)s[bad]));
}

/* A leading BOM (U+FEFF) is not text; it still counts in byte positions. */
static void
drop_bom(Reader *r)
{
    if (r->bom_done || r->valid_end == 0) {
        return;
    }
    r->bom_done = 1;
    if (r->valid_end >= 3 && memcmp(r->in.data, "\xef\xbb\xbf", 3) == 0) {
        memmove(r->in.data, r->in.data + 3, r->in.len - 3);
        r->in.len -= 3;
        r->valid_end -= 3;
        r->offset += 3;
    }
}

static PyObject *
Reader_feed(Reader *r, PyObject *arg)
{
    if (!usable(r)) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    r->broken = 1; /* until this piece is through */
    if (buf_reserve(&r->in, view.len) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    put_bytes(&r->in, view.buf, view.len);
    PyBuffer_Release(&view);

    /* 1. Decode the whole piece. */
    const unsigned char *s = (const unsigned char *)r->in.data;
    Py_ssize_t from = r->valid_end, bad;
    Py_ssize_t valid_end = utf8_check(s, from, r->in.len, 0, &bad);
    if (bad >= 0) {
        refuse_undecodable(r, from, bad);
        return NULL;
    }
    r->newlines += count_byte(s + from, valid_end - from, '\n');
    r->valid_end = valid_end;
    drop_bom(r);
    s = (const unsigned char *)r->in.data;
    valid_end = r->valid_end;

    /* 2. Where the complete lines end, and how long the unfinished one is. A CR at the very end
       may be the first half of a CRLF: it is neither a line end nor a character yet. */
    Py_ssize_t limit = valid_end;
    if (limit > 0 && s[limit - 1] == '\r') {
        limit--;
    }
    Py_ssize_t lines_end = 0;
    for (Py_ssize_t k = limit; k > r->scanned_end; k--) {
        if (s[k - 1] == '\n' || s[k - 1] == '\r') {
            lines_end = k;
            break;
        }
    }
    if (lines_end) {
        r->tail_chars = count_chars(s + lines_end, limit - lines_end);
    }
    else if (limit > r->scanned_end) {
        r->tail_chars += count_chars(s + r->scanned_end, limit - r->scanned_end);
    }
    r->scanned_end = limit > r->scanned_end ? limit : r->scanned_end;
    if (limit > lines_end && r->tail_chars > r->max_line_chars) {
        refuse("line-too-long", Py_BuildValue("(L)", (long long)record_line(r)));
        return NULL;
    }

    /* 3. Parse the complete lines; keep the rest for the next piece. */
    if (lines_end) {
        if (parse(r, s, lines_end, 0) < 0) {
            return NULL;
        }
        memmove(r->in.data, r->in.data + lines_end, r->in.len - lines_end);
        r->in.len -= lines_end;
        r->valid_end -= lines_end;
        r->scanned_end -= lines_end;
        r->offset += lines_end;
    }
    r->broken = 0;
    return take_output(r);
}

static PyObject *
Reader_finish(Reader *r, PyObject *Py_UNUSED(ignored))
{
    if (!usable(r)) {
        return NULL;
    }
    r->broken = 1;
    const unsigned char *s = (const unsigned char *)r->in.data;
    Py_ssize_t bad;
    utf8_check(s, r->valid_end, r->in.len, 1, &bad);
    if (bad >= 0) {
        refuse_undecodable(r, r->valid_end, bad);
        return NULL;
    }
    if (parse(r, s, r->in.len, 1) < 0) {
        return NULL;
    }
    r->in.len = r->valid_end = r->scanned_end = 0;
    if (r->state != START_RECORD) { /* a quoted field is still open */
        refuse_csv(r, "unexpected end of data");
        return NULL;
    }
    r->broken = 0;
    r->finished = 1;
    return take_output(r);
}

static int
Reader_init(Reader *r, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"batch_id",        "on_header",      "field_limit",
                             "max_line_chars",  "max_text_chars", "max_id_chars",
                             "kept_id_chars",   "max_rows",       "strict",
                             "problems_listed", "max_kept_chars", NULL};
    long long batch_id, max_rows;
    PyObject *on_header;
    int strict;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LO$nnnnnLpnn", kwlist, &batch_id, &on_header,
                                     &r->field_limit, &r->max_line_chars, &r->max_text_chars,
                                     &r->max_id_chars, &r->kept_id_chars, &max_rows, &strict,
                                     &r->problems_listed, &r->max_kept_chars)) {
        return -1;
    }
    if (!PyCallable_Check(on_header)) {
        PyErr_SetString(PyExc_TypeError, "on_header must be callable");
        return -1;
    }
    if (r->on_header != NULL || r->problems != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Reader is initialised once");
        return -1;
    }
    r->batch_id = batch_id;
    r->max_rows = max_rows;
    r->strict = strict;
    Py_INCREF(on_header);
    r->on_header = on_header;
    r->problems = PyList_New(0);
    if (r->problems == NULL) {
        return -1;
    }
    r->state = START_RECORD;
    r->id_index = r->text_index = -1;
    return 0;
}

static int
Reader_traverse(Reader *r, visitproc visit, void *arg)
{
    Py_VISIT(r->on_header);
    Py_VISIT(r->problems);
    return 0;
}

static int
Reader_clear(Reader *r)
{
    Py_CLEAR(r->on_header);
    Py_CLEAR(r->problems);
    return 0;
}

static void
Reader_dealloc(Reader *r)
{
    PyObject_GC_UnTrack(r);
    Reader_clear(r);
    PyMem_Free(r->in.data);
    PyMem_Free(r->rec.data);
    PyMem_Free(r->out.data);
    PyMem_Free(r->header_fields);
    PyMem_Free(r->kept);
    PyMem_Free(r->row_fields);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *
Reader_get_counts(Reader *r, void *closure)
{
    return Py_BuildValue("(LLL)", (long long)r->rows, (long long)r->valid, (long long)r->invalid);
}

static PyObject *
Reader_get_header_seen(Reader *r, void *closure)
{
    return PyBool_FromLong(r->header_done);
}

static PyObject *
Reader_get_problems(Reader *r, void *closure)
{
    return PyList_GetSlice(r->problems, 0, PY_SSIZE_T_MAX);
}

static PyMethodDef Reader_methods[] = {
    {"feed", (PyCFunction)Reader_feed, METH_O,
     "feed(piece) -> bytes: the COPY tuples of the rows the piece completes."},
    {"finish", (PyCFunction)Reader_finish, METH_NOARGS,
     "finish() -> bytes: the COPY tuples of the last rows, once the file has ended."},
    {NULL},
};

static PyGetSetDef Reader_getset[] = {
    {"counts", (getter)Reader_get_counts, NULL, "(data rows, rows to score, rows set aside)", NULL},
    {"header_seen", (getter)Reader_get_header_seen, NULL, "whether the header row was read", NULL},
    {"problems", (getter)Reader_get_problems, NULL, "the first problems, 'line N: detail'", NULL},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "webapp.upload._fastcsv.Reader",
    .tp_doc = "Reader(batch_id, on_header, *, field_limit, max_line_chars, max_text_chars, "
              "max_id_chars, kept_id_chars, max_rows, strict, problems_listed, max_kept_chars)",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
};

static struct PyModuleDef fastcsv_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "webapp.upload._fastcsv",
    .m_doc = "The upload's CSV parser in C (see webapp/upload/csv_reader.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastcsv(void)
{
    UNQUOTED_STOP[','] = UNQUOTED_STOP['\r'] = UNQUOTED_STOP['\n'] = 1;
    if (PyType_Ready(&ReaderType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&fastcsv_module);
    if (module == NULL) {
        return NULL;
    }
    Refusal = PyErr_NewException("webapp.upload._fastcsv.Refusal", NULL, NULL);
    if (Refusal == NULL || PyModule_AddObjectRef(module, "Refusal", Refusal) < 0
        || PyModule_AddObjectRef(module, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
