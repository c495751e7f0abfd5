/* .npy reading and writing (npy.h); the format: numpy.lib.format. */
#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char MAGIC[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

static int failed(char *error, size_t size, const char *format, const char *path, const char *detail) {
  snprintf(error, size, format, path, detail);
  return -1;
}

/* The value text of `'key':` in the header dict, or NULL. */
static const char *value_of(const char *header, const char *key) {
  char quoted[32];
  snprintf(quoted, sizeof quoted, "'%s'", key);
  const char *at = strstr(header, quoted);
  if (!at) return NULL;
  at += strlen(quoted);
  while (*at == ' ') at++;
  if (*at != ':') return NULL;
  at++;
  while (*at == ' ') at++;
  return at;
}

int npy_read(const char *path, npy_matrix *out, char *error, size_t size) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return failed(error, size, "cannot read %s: %s", path, errno == ENOENT ? "no such file or directory" : strerror(errno));
  unsigned char preamble[12];
  char *header = NULL;
  int status = -1;
  if (fread(preamble, 1, 10, f) != 10 || memcmp(preamble, MAGIC, 6) != 0) {
    failed(error, size, "%s is not a .npy file (%s)", path, "bad magic string");
    goto done;
  }
  unsigned major = preamble[6];
  uint32_t header_length;
  if (major == 1) {
    header_length = preamble[8] | (uint32_t)preamble[9] << 8;
  } else if ((major == 2 || major == 3) && fread(preamble + 10, 1, 2, f) == 2) {
    header_length = preamble[8] | (uint32_t)preamble[9] << 8 | (uint32_t)preamble[10] << 16 | (uint32_t)preamble[11] << 24;
  } else {
    failed(error, size, "%s has an unsupported .npy format version%s", path, "");
    goto done;
  }
  if (header_length > 1 << 20 || !(header = calloc(header_length + 1, 1)) || fread(header, 1, header_length, f) != header_length) {
    failed(error, size, "%s is truncated: %s", path, "it ends inside the .npy header");
    goto done;
  }
  const char *descr = value_of(header, "descr");
  int is_f8 = descr && (strncmp(descr, "'<f8'", 5) == 0 || strncmp(descr, "'|f8'", 5) == 0);
  int is_f4 = descr && (strncmp(descr, "'<f4'", 5) == 0 || strncmp(descr, "'|f4'", 5) == 0);
  int is_f2 = descr && (strncmp(descr, "'<f2'", 5) == 0 || strncmp(descr, "'|f2'", 5) == 0);
  if (!is_f4 && !is_f8 && !is_f2) {
    char dtype[16] = "?";
    if (descr && *descr == '\'') sscanf(descr + 1, "%15[^']", dtype);
    char detail[64];
    snprintf(detail, sizeof detail, "'%s'", dtype);
    failed(error, size, "%s has unsupported dtype %s; expected float16 ('<f2'), float32 ('<f4') or float64 ('<f8')", path, detail);
    goto done;
  }
  const char *fortran = value_of(header, "fortran_order");
  if (!fortran || strncmp(fortran, "False", 5) != 0) {
    failed(error, size, "%s is %s; expected C order (save np.ascontiguousarray(arr))", path, fortran ? "in Fortran (column-major) order" : "missing fortran_order");
    goto done;
  }
  const char *shape = value_of(header, "shape");
  unsigned long long rows = 0, columns = 0;
  int consumed = 0;
  if (!shape || sscanf(shape, "(%llu , %llu )%n", &rows, &columns, &consumed) != 2 || consumed == 0) {
    char detail[64] = "";
    if (shape && sscanf(shape, "%62[^)]", detail) == 1) strcat(detail, ")");
    failed(error, size, "%s is not a 2-D array (shape %s); expected a 2-D n x d array", path, detail[0] ? detail : "missing");
    goto done;
  }
  if (rows > UINT32_MAX || columns > UINT32_MAX || rows * columns > SIZE_MAX / 8) {
    failed(error, size, "%s declares a shape %s", path, "too large to read");
    goto done;
  }
  size_t count = (size_t)(rows * columns), element = is_f8 ? 8 : is_f2 ? 2 : 4;
  /* float16 bits stay as they are, padded to whole 4-byte words as WebGPU buffers take them. */
  void *raw = is_f2 ? calloc(count + 2, 2) : malloc(count * element + 1);
  if (!is_f2) out->data = malloc(count * sizeof(float) + 1);
  if (!raw || (!is_f2 && !out->data)) {
    free(raw);
    failed(error, size, "%s is too large for %s", path, "host memory");
    goto done;
  }
  size_t got = fread(raw, element, count, f);
  int extra = fgetc(f) != EOF;
  if (got != count || extra) {
    free(raw);
    failed(error, size, got != count ? "%s is truncated: %s" : "%s has %s", path, got != count ? "fewer bytes than its shape declares" : "extra data after the shape its header declares");
    goto done;
  }
  if (is_f2) out->half = raw;
  else {
    for (size_t i = 0; i < count; i++) out->data[i] = is_f8 ? (float)((const double *)raw)[i] : ((const float *)raw)[i];
    free(raw);
  }
  out->rows = (uint32_t)rows;
  out->columns = (uint32_t)columns;
  status = 0;
done:
  if (status != 0) {
    free(out->data);
    free(out->half);
    out->data = NULL;
    out->half = NULL;
  }
  free(header);
  fclose(f);
  return status;
}

int npy_write(const char *path, const void *data, int half, uint32_t rows, uint32_t columns, char *error, size_t size) {
  char dict[128];
  int length = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%u, %u), }", half ? "<f2" : "<f4", rows, columns);
  /* Spaces, then a newline, pad the header so that the data starts on a 64-byte boundary. */
  size_t padded = (10 + (size_t)length + 1 + 63) / 64 * 64;
  size_t header_length = padded - 10;
  unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(header_length & 0xff), (unsigned char)(header_length >> 8)};
  FILE *f = fopen(path, "wb");
  if (!f) return failed(error, size, "cannot write %s: %s", path, strerror(errno));
  int ok = fwrite(preamble, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)length, f) == (size_t)length;
  for (size_t i = (size_t)length; ok && i + 1 < header_length; i++) ok = fputc(' ', f) != EOF;
  size_t element = half ? 2 : sizeof(float);
  ok = ok && fputc('\n', f) != EOF && fwrite(data, element, (size_t)rows * columns, f) == (size_t)rows * columns;
  if (fclose(f) != 0) ok = 0;
  return ok ? 0 : failed(error, size, "cannot write %s: %s", path, strerror(errno));
}
