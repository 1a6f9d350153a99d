#include "czlib.h"

int czlib_inflate_init_raw(z_stream *stream) {
    return inflateInit2(stream, -15);
}
