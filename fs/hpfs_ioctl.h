// SPDX-License-Identifier: Apache-2.0
/* Public interface of hpfs's per-file ioctls (used by hpfsctl and by any
 * program that opens a file on an hpfs mount). C and C++.
 *
 * HPFS_IOC_STAT works on any open regular file. HPFS_IOC_SET needs a handle
 * opened for writing (EBADF otherwise); it changes only the fields named in
 * `mask`, and a bad value (a segment size of 0 or above 1 TiB) fails the whole
 * call with EINVAL and changes nothing. A retention value of 0 means "no limit".
 */
#ifndef HPFS_IOCTL_H_
#define HPFS_IOCTL_H_

#include <linux/ioctl.h>
#include <stdint.h>

#define HPFS_DAMAGE_MAX 256

/* hpfs_stat.flags */
#define HPFS_STAT_DAMAGED (1u << 0)
#define HPFS_STAT_WRITEBACK (1u << 1) /* mounted with -o writeback */
#define HPFS_STAT_TIERED (1u << 2)    /* mounted with -o tier_url=... */

struct hpfs_stat {
  uint64_t head;           /* first readable byte; [0, head) reads as zeros */
  uint64_t size;           /* end of file */
  uint64_t durable_size;   /* bytes below this survive a power loss */
  uint64_t segments;       /* segment files holding the file */
  uint64_t segment_size;   /* capacity of segments created from now on */
  uint64_t retain_bytes;   /* 0: no byte limit */
  uint64_t retain_seconds; /* 0: no age limit */
  uint32_t flags;          /* HPFS_STAT_* */
  uint32_t held_bytes;      /* -o writeback: bytes that came out of order, waiting for the bytes before them */
  char damage[HPFS_DAMAGE_MAX]; /* why the file is damaged, NUL-terminated; "" if not */
  uint64_t pruned_segments;     /* pruned segment files not deleted yet (the deleter's backlog) */
  uint64_t pruned_bytes;        /* their slots' bytes: at most the space still to be freed */
  /* Tiered storage (HPFS_STAT_TIERED): how much stays local, and where the
   * bytes between head and size are. Untiered: local_* as above, remote 0. */
  uint64_t local_retain_bytes;   /* 0: the mount's (0 there too: no limit) */
  uint64_t local_retain_seconds; /* 0: the mount's */
  uint64_t local_bytes;
  uint64_t local_segments;
  uint64_t remote_bytes;
  uint64_t remote_segments;
  uint64_t deleting_objects; /* dropped objects whose deletion is pending */
  /* -o writeback: the part of held_bytes in the daemon's spool file (past the
   * reorder buffer's memory), and writes refused with ENOSPC because the
   * spool was at its bound (spool_max) */
  uint64_t spooled_bytes;
  uint64_t spool_overflows;
};

/* hpfs_set.mask */
#define HPFS_SET_SEGMENT_SIZE (1u << 0)
#define HPFS_SET_RETAIN_BYTES (1u << 1)
#define HPFS_SET_RETAIN_SECONDS (1u << 2)
#define HPFS_SET_LOCAL_RETAIN_BYTES (1u << 3)
#define HPFS_SET_LOCAL_RETAIN_SECONDS (1u << 4)

struct hpfs_set {
  uint32_t mask; /* HPFS_SET_* */
  uint32_t reserved;
  uint64_t segment_size;
  uint64_t retain_bytes;
  uint64_t retain_seconds;
  uint64_t local_retain_bytes;
  uint64_t local_retain_seconds;
};

#define HPFS_IOC_MAGIC 'h'
#define HPFS_IOC_STAT _IOR(HPFS_IOC_MAGIC, 1, struct hpfs_stat)
#define HPFS_IOC_SET _IOW(HPFS_IOC_MAGIC, 2, struct hpfs_set)

#endif /* HPFS_IOCTL_H_ */
