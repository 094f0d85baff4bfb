/* LD_PRELOAD shim for the power-cut test: logs, in order, every write, truncate and sync a process makes to
 * files under $TRACE_DIR, into $TRACE_LOG. A checker replays the log up to a cut point the way a disk may
 * keep it after a power cut: everything a file had when it was last synced, and any subset of what was
 * written to it after. Records: type (W write, T truncate, S sync), u16 path length, path, i64 offset,
 * u64 length, then `length` bytes of data for W. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int logfd = -1;
static const char *dir = NULL;
static size_t dirlen = 0;

static ssize_t raw_write(int fd, const void *buf, size_t n) { return syscall(SYS_write, fd, buf, n); }

static void init(void) {
    if (dir != NULL) return;
    const char *d = getenv("TRACE_DIR"), *l = getenv("TRACE_LOG");
    if (d == NULL || l == NULL) { dir = ""; return; }
    logfd = (int)syscall(SYS_openat, AT_FDCWD, l, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dirlen = strlen(d);
    dir = d;
}

static int tracked(int fd, char *path) {
    char link[64];
    init();
    if (logfd < 0 || dirlen == 0) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, PATH_MAX - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return strncmp(path, dir, dirlen) == 0;
}

static void record(char type, const char *path, int64_t offset, uint64_t length, const void *data) {
    uint16_t plen = (uint16_t)strlen(path);
    pthread_mutex_lock(&lock);
    raw_write(logfd, &type, 1);
    raw_write(logfd, &plen, 2);
    raw_write(logfd, path, plen);
    raw_write(logfd, &offset, 8);
    raw_write(logfd, &length, 8);
    if (type == 'W') raw_write(logfd, data, length);
    pthread_mutex_unlock(&lock);
}

#define REAL(name, ret, ...) static ret (*real_##name)(__VA_ARGS__) = NULL; \
    if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite64, ssize_t, int, const void *, size_t, off_t);
    ssize_t r = real_pwrite64(fd, buf, n, off);
    char path[PATH_MAX];
    if (r > 0 && tracked(fd, path)) record('W', path, off, (uint64_t)r, buf);
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) { return pwrite64(fd, buf, n, off); }

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write, ssize_t, int, const void *, size_t);
    char path[PATH_MAX];
    int t = tracked(fd, path);
    off_t before = t ? lseek(fd, 0, SEEK_CUR) : 0;
    ssize_t r = real_write(fd, buf, n);
    if (r > 0 && t) {
        off_t after = lseek(fd, 0, SEEK_CUR);
        record('W', path, after - r >= 0 ? after - r : before, (uint64_t)r, buf);
    }
    return r;
}

int ftruncate64(int fd, off_t len) {
    REAL(ftruncate64, int, int, off_t);
    int r = real_ftruncate64(fd, len);
    char path[PATH_MAX];
    if (r == 0 && tracked(fd, path)) record('T', path, len, 0, NULL);
    return r;
}

int ftruncate(int fd, off_t len) { return ftruncate64(fd, len); }

int fsync(int fd) {
    REAL(fsync, int, int);
    int r = real_fsync(fd);
    char path[PATH_MAX];
    if (r == 0 && tracked(fd, path)) record('S', path, 0, 0, NULL);
    return r;
}

int fdatasync(int fd) {
    REAL(fdatasync, int, int);
    int r = real_fdatasync(fd);
    char path[PATH_MAX];
    if (r == 0 && tracked(fd, path)) record('S', path, 0, 0, NULL);
    return r;
}
