/*
 * report.c - messages and fatal errors, formatted without malloc.
 *
 * stdio may allocate (and would recurse into a preloaded malloc), so the
 * few conversions the library needs are done here into a stack buffer.
 */
#include "internal.h"

#include <stdarg.h>
#include <sys/types.h>

struct out {
  char *buf;
  size_t cap, len;
};

static void put(struct out *o, char c) {
  if (o->len + 1 < o->cap) o->buf[o->len] = c;
  o->len++;
}

static void put_str(struct out *o, const char *s) {
  if (!s) s = "(null)";
  while (*s) put(o, *s++);
}

static void put_uint(struct out *o, unsigned long long v, unsigned base) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  while (n) put(o, tmp[--n]);
}

static size_t vformat(char *buf, size_t cap, const char *fmt, va_list ap) {
  struct out o = {buf, cap, 0};
  for (const char *f = fmt; *f; f++) {
    if (*f != '%') {
      put(&o, *f);
      continue;
    }
    f++;
    bool z = false;
    if (*f == 'z') {
      z = true;
      f++;
    }
    switch (*f) {
      case 's': put_str(&o, va_arg(ap, const char *)); break;
      case 'd': {
        long long v = z ? (long long)va_arg(ap, ssize_t) : va_arg(ap, int);
        if (v < 0) {
          put(&o, '-');
          put_uint(&o, (unsigned long long)-(v + 1) + 1, 10);
        } else {
          put_uint(&o, (unsigned long long)v, 10);
        }
        break;
      }
      case 'u':
        put_uint(&o, z ? va_arg(ap, size_t) : va_arg(ap, unsigned), 10);
        break;
      case 'x':
        put_uint(&o, z ? va_arg(ap, size_t) : va_arg(ap, unsigned), 16);
        break;
      case 'p':
        put_str(&o, "0x");
        put_uint(&o, (uintptr_t)va_arg(ap, void *), 16);
        break;
      case '%': put(&o, '%'); break;
      default:
        put(&o, '%');
        if (*f) put(&o, *f);
        else f--;
        break;
    }
  }
  if (cap) buf[o.len < cap ? o.len : cap - 1] = '\0';
  return o.len < cap ? o.len : (cap ? cap - 1 : 0);
}

size_t umpa_format(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = vformat(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}

static void vwarn(const char *fmt, va_list ap) {
  char buf[512];
  size_t n = vformat(buf, sizeof buf, fmt, ap);
  os_write_stderr(buf, n);
}

void umpa_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwarn(fmt, ap);
  va_end(ap);
}

void umpa_fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwarn(fmt, ap);
  va_end(ap);
  os_abort();
}
