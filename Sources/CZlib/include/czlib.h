#ifndef CZLIB_H
#define CZLIB_H

#include <zlib.h>

/// `inflateInit2(stream, -15)`: a raw deflate stream (zip's method 8, no zlib or gzip wrapper). Returns zlib's
/// status (Z_OK on success). The caller zero-initialises `stream` and ends it with `inflateEnd`.
int czlib_inflate_init_raw(z_stream *stream);

#endif
