/* NumPy .npy files for the command-line program: 2-D float16 (kept as their bits), float32 or float64
 * (converted to float32) arrays in C order, read strictly (every header field checked, the data length
 * compared with the shape), and float32 or float16 arrays written (format 1.0, the data 64-byte aligned,
 * as numpy writes them). */
#ifndef VICREG_NPY_H
#define VICREG_NPY_H

#include <stddef.h>
#include <stdint.h>

typedef struct npy_matrix {
  float *data;    /* rows * columns floats, row-major; free() it (NULL for a float16 file) */
  uint16_t *half; /* a float16 file's binary16 bits, rows * columns rounded up to even; free() it */
  uint32_t rows, columns;
} npy_matrix;

/* Reads `path`; returns 0, or -1 with one line in `error`. */
int npy_read(const char *path, npy_matrix *out, char *error, size_t error_size);

/* Writes rows x columns float32 values (or, with `half`, binary16 bits) to `path`; returns 0, or -1 with one line in `error`. */
int npy_write(const char *path, const void *data, int half, uint32_t rows, uint32_t columns, char *error, size_t error_size);

#endif
