// qed_native: what src/io needs from the kernel and Node's fs does not offer.
//
//   lockByte(fd, byte, kind)   kind "shared" | "exclusive" | "unlock"; F_OFD_SETLK on one byte.
//                              Returns false when another open file description holds a
//                              conflicting lock, true when done; throws on any other failure.
//   isByteLocked(fd, byte)     F_OFD_GETLK with an exclusive lock: true when another open file
//                              description holds any lock on the byte.
//   blockDeviceSize(fd)        ioctl BLKGETSIZE64: a block device's size in bytes (fstat says 0).
//   readNowait(fd, buf, position)
//                              preadv2 with RWF_NOWAIT: reads into buf (a Uint8Array) only what
//                              the page cache already holds, never waiting for the device.
//                              Returns the bytes read, -1 when nothing could be read without
//                              blocking (EAGAIN), -2 when this file or kernel cannot do it
//                              (tmpfs, no RWF_NOWAIT): the caller then stops asking.
//   seekData(fd, offset, hole) lseek SEEK_DATA (hole false) or SEEK_HOLE (hole true): the next
//                              data or hole at or after offset, or -1 when there is no more
//                              data (ENXIO). Where holes cannot be found, throws with ENOSYS.
//
// Open-file-description locks (Linux 3.15) belong to the open file, not the process, so two
// opens in one process conflict like two processes do, and closing one descriptor never drops
// the locks of another open. QEMU's file-posix driver uses the same locks on the same bytes,
// which is what lets qed and QEMU's tools see each other (src/io/image-lock.ts).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/fs.h>
#endif
#include <node_api.h>

// Throws an Error whose `code` is the errno name Node uses for fs errors ("EBADF").
static napi_value throw_errno(napi_env env, const char *what, int err) {
  const char *name = NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  name = strerrorname_np(err);
#endif
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, name ? name : "EIO", message);
  return NULL;
}

static bool read_args(napi_env env, napi_callback_info info, size_t wanted, napi_value *args) {
  size_t count = wanted;
  if (napi_get_cb_info(env, info, &count, args, NULL, NULL) != napi_ok || count < wanted) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return false;
  }
  return true;
}

static bool read_int64(napi_env env, napi_value value, const char *name, int64_t *out) {
  if (napi_get_value_int64(env, value, out) != napi_ok) {
    char message[64];
    snprintf(message, sizeof message, "%s must be a number", name);
    napi_throw_type_error(env, NULL, message);
    return false;
  }
  return true;
}

static napi_value boolean(napi_env env, bool value) {
  napi_value out;
  napi_get_boolean(env, value, &out);
  return out;
}

#ifdef F_OFD_SETLK
static void describe_byte(struct flock *lock, short type, int64_t byte) {
  memset(lock, 0, sizeof *lock);
  lock->l_type = type;
  lock->l_whence = SEEK_SET;
  lock->l_start = (off_t)byte;
  lock->l_len = 1;
  lock->l_pid = 0;  // must be 0 for OFD locks
}
#endif

static napi_value lock_byte(napi_env env, napi_callback_info info) {
  napi_value args[3];
  if (!read_args(env, info, 3, args)) return NULL;
  int64_t fd, byte;
  if (!read_int64(env, args[0], "fd", &fd) || !read_int64(env, args[1], "byte", &byte)) return NULL;
  char kind[16];
  size_t length;
  if (napi_get_value_string_utf8(env, args[2], kind, sizeof kind, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "kind must be a string");
    return NULL;
  }
#ifdef F_OFD_SETLK
  short type;
  if (strcmp(kind, "shared") == 0) type = F_RDLCK;
  else if (strcmp(kind, "exclusive") == 0) type = F_WRLCK;
  else if (strcmp(kind, "unlock") == 0) type = F_UNLCK;
  else {
    napi_throw_type_error(env, NULL, "kind must be shared, exclusive or unlock");
    return NULL;
  }
  struct flock lock;
  describe_byte(&lock, type, byte);
  if (fcntl((int)fd, F_OFD_SETLK, &lock) == 0) return boolean(env, true);
  if (errno == EAGAIN || errno == EACCES) return boolean(env, false);
  return throw_errno(env, "fcntl(F_OFD_SETLK)", errno);
#else
  (void)byte;
  return throw_errno(env, "open file description locks", ENOSYS);
#endif
}

static napi_value is_byte_locked(napi_env env, napi_callback_info info) {
  napi_value args[2];
  if (!read_args(env, info, 2, args)) return NULL;
  int64_t fd, byte;
  if (!read_int64(env, args[0], "fd", &fd) || !read_int64(env, args[1], "byte", &byte)) return NULL;
#ifdef F_OFD_GETLK
  struct flock lock;
  describe_byte(&lock, F_WRLCK, byte);
  if (fcntl((int)fd, F_OFD_GETLK, &lock) != 0) return throw_errno(env, "fcntl(F_OFD_GETLK)", errno);
  return boolean(env, lock.l_type != F_UNLCK);
#else
  (void)byte;
  return throw_errno(env, "open file description locks", ENOSYS);
#endif
}

static napi_value block_device_size(napi_env env, napi_callback_info info) {
  napi_value args[1];
  if (!read_args(env, info, 1, args)) return NULL;
  int64_t fd;
  if (!read_int64(env, args[0], "fd", &fd)) return NULL;
#ifdef BLKGETSIZE64
  uint64_t bytes = 0;
  if (ioctl((int)fd, BLKGETSIZE64, &bytes) != 0) return throw_errno(env, "ioctl(BLKGETSIZE64)", errno);
  napi_value out;
  napi_create_double(env, (double)bytes, &out);  // exact below 2^53 bytes (8 PiB)
  return out;
#else
  return throw_errno(env, "ioctl(BLKGETSIZE64)", ENOSYS);
#endif
}

static napi_value seek_data(napi_env env, napi_callback_info info) {
  napi_value args[3];
  if (!read_args(env, info, 3, args)) return NULL;
  int64_t fd, offset;
  if (!read_int64(env, args[0], "fd", &fd) || !read_int64(env, args[1], "offset", &offset)) return NULL;
  bool hole = false;
  if (napi_get_value_bool(env, args[2], &hole) != napi_ok) {
    napi_throw_type_error(env, NULL, "hole must be a boolean");
    return NULL;
  }
#if defined(SEEK_DATA) && defined(SEEK_HOLE)
  off_t at = lseek((int)fd, (off_t)offset, hole ? SEEK_HOLE : SEEK_DATA);
  napi_value out;
  if (at < 0) {
    if (errno != ENXIO) return throw_errno(env, hole ? "lseek(SEEK_HOLE)" : "lseek(SEEK_DATA)", errno);
    at = -1;
  }
  napi_create_double(env, (double)at, &out);
  return out;
#else
  (void)offset; (void)hole;
  return throw_errno(env, "lseek(SEEK_DATA)", ENOSYS);
#endif
}

static napi_value read_nowait(napi_env env, napi_callback_info info) {
  napi_value args[3];
  if (!read_args(env, info, 3, args)) return NULL;
  int64_t fd, position;
  if (!read_int64(env, args[0], "fd", &fd) || !read_int64(env, args[2], "position", &position)) return NULL;
  void *data = NULL;
  size_t length = 0;
  napi_typedarray_type type;
  napi_value arraybuffer;
  size_t byte_offset;
  if (napi_get_typedarray_info(env, args[1], &type, &length, &data, &arraybuffer, &byte_offset) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "buf must be a Uint8Array");
    return NULL;
  }
  ssize_t got = -2;
#if defined(RWF_NOWAIT)
  struct iovec iov = { data, length };
  got = preadv2((int)fd, &iov, 1, (off_t)position, RWF_NOWAIT);
  if (got < 0) {
    if (errno == EAGAIN) got = -1;
    else if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) got = -2;
    else return throw_errno(env, "preadv2(RWF_NOWAIT)", errno);
  }
#else
  (void)fd; (void)position; (void)data; (void)length;
#endif
  napi_value out;
  napi_create_double(env, (double)got, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
    { "lockByte", NULL, lock_byte, NULL, NULL, NULL, napi_enumerable, NULL },
    { "isByteLocked", NULL, is_byte_locked, NULL, NULL, NULL, napi_enumerable, NULL },
    { "blockDeviceSize", NULL, block_device_size, NULL, NULL, NULL, napi_enumerable, NULL },
    { "seekData", NULL, seek_data, NULL, NULL, NULL, napi_enumerable, NULL },
    { "readNowait", NULL, read_nowait, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
