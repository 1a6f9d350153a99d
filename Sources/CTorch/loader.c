// Finds and loads the libtorch backend (libmonailabel_torch.so) at run time and forwards the mlt_ API to it.
// Plain C with no torch headers, so the Swift binary runs against whichever libtorch the backend was built for.
#define _GNU_SOURCE
#include "mlt_torch.h"
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mlt_symbol {
    const char *name;
    void **slot;
};

static void mlt_load_or_die(void);

#include "forwarders.h"

#define MLT_BACKEND_FILE "libmonailabel_torch.so"

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
// Written only inside load_once; read-only afterwards (pthread_once orders the writes before every reader).
static int loaded;
static char load_message[PATH_MAX + 1024];
static char loaded_path[PATH_MAX];

static void load(void) {
    char path[PATH_MAX];
    const char *env = getenv("MONAILABEL_TORCH_BACKEND");
    if (env && *env) {
        if (strlen(env) >= sizeof path) {
            snprintf(load_message, sizeof load_message, "MONAILABEL_TORCH_BACKEND is longer than PATH_MAX");
            return;
        }
        strcpy(path, env);
    } else {
        // Next to the executable: the product's monailabel, or a test runner in the same build folder.
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        if (n <= 0) {
            snprintf(load_message, sizeof load_message,
                     "cannot find the libtorch backend: /proc/self/exe is unreadable; set MONAILABEL_TORCH_BACKEND");
            return;
        }
        path[n] = '\0';
        char *slash = strrchr(path, '/');
        size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
        if (dir + sizeof MLT_BACKEND_FILE > sizeof path) {
            snprintf(load_message, sizeof load_message, "the executable's path is too long for the backend's");
            return;
        }
        memcpy(path + dir, MLT_BACKEND_FILE, sizeof MLT_BACKEND_FILE);
    }
    // RTLD_LOCAL keeps libtorch's symbols out of the global scope; the backend resolves its own libtorch
    // through its RUNPATH (the torch it was built against).
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(load_message, sizeof load_message,
                 "cannot load the libtorch backend (%s; build it with `swift build --product monailabel_torch` "
                 "or scripts/build-torch-backend.sh, or set MONAILABEL_TORCH_BACKEND): %s",
                 path, dlerror());
        return;
    }
    for (size_t i = 0; i < sizeof mlt_symbols / sizeof mlt_symbols[0]; ++i) {
        void *f = dlsym(handle, mlt_symbols[i].name);
        if (!f) {
            snprintf(load_message, sizeof load_message,
                     "the libtorch backend %s lacks %s: it was built from other shim sources than this binary",
                     path, mlt_symbols[i].name);
            return;
        }
        *mlt_symbols[i].slot = f;
    }
    strcpy(loaded_path, path);
    loaded = 1;
}

const char *mlt_backend_load(void) {
    pthread_once(&load_once, load);
    return loaded ? NULL : load_message;
}

const char *mlt_backend_path(void) {
    pthread_once(&load_once, load);
    return loaded ? loaded_path : NULL;
}

// Callers check mlt_backend_load at start-up; reaching an API function without a backend is an installation
// error that no request can cause, and there is no meaningful result to return.
static void mlt_load_or_die(void) {
    const char *message = mlt_backend_load();
    if (message) {
        fprintf(stderr, "monailabel: %s\n", message);
        abort();
    }
}
