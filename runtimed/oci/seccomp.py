"""The default seccomp profile: an allow-list, in the spirit of Docker's.

Every syscall not listed fails with EPERM. The list holds what ordinary
programs use; what would let a container reach the kernel's global state
(keyrings, modules, kexec, clocks, swap, bpf, perf, mounts and namespaces,
userfaultfd, io_uring) is allowed only when the container holds the
capability that the kernel itself would demand for it, as Docker does. clone
may not create namespaces without CAP_SYS_ADMIN, and clone3 (whose flags sit
in memory a filter cannot read) answers ENOSYS so libc falls back to clone.
Privileged containers get no profile at all (the caller omits it).

Syscall names unknown to the host's libseccomp are ignored by crun and runc,
so listing the names of several architectures and kernel versions is safe.
"""

from __future__ import annotations

import errno
import platform
from collections.abc import Iterable
from typing import Any

_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid getegid32 geteuid
geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid
getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getrusage
getsid getsockname getsockopt gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents
io_pgetevents_time64 io_setup io_submit ioctl ioprio_get ioprio_set ipc kill
landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr
link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod
mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min
sched_getaffinity sched_getattr sched_getparam sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto set_robust_list
set_thread_area set_tid_address setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid
setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt setuid
setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socket socketcall socketpair splice stat stat64 statfs statfs64 statx
symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
ptrace process_vm_readv process_vm_writev
"""

# Per architecture, beyond the common list.
_ARCH_ALLOWED = {
    "x86_64": "arch_prctl modify_ldt",
    "aarch64": "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush "
    "set_tls",
}

_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}

# Syscalls the kernel reserves to a capability, allowed only when it is held.
_BY_CAPABILITY = {
    "CAP_SYS_ADMIN": "bpf clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie "
    "mount mount_setattr move_mount open_tree perf_event_open pivot_root quotactl "
    "quotactl_fd setdomainname sethostname setns umount umount2 unshare",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# clone's flags argument must not ask for a namespace (CLONE_NEWNS | NEWCGROUP |
# NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET).
_CLONE_NS_FLAGS = 0x7E020000
# personality(2): only the harmless personas (Linux, 32-bit, UNAME26 and the query).
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def default_profile(capabilities: Iterable[str], machine: str | None = None) -> dict[str, Any]:
    """The linux.seccomp object for a container holding `capabilities` (CAP_* names)."""
    caps = set(capabilities)
    arch = machine or platform.machine()
    allowed = set(_ALLOWED.split()) | set(_ARCH_ALLOWED.get(arch, "").split())
    for cap, names in _BY_CAPABILITY.items():
        if cap in caps:
            allowed |= set(names.split())
    # One rule per persona: libseccomp ORs rules but ANDs the args within one.
    syscalls: list[dict[str, Any]] = [{"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"}]
    syscalls += [
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}],
        }
        for p in _PERSONALITIES
    ]
    if "CAP_SYS_ADMIN" in caps:
        syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW"})
    else:
        # s390x swaps clone's first two arguments; the architectures above do not.
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {
                        "index": 0,
                        "value": _CLONE_NS_FLAGS,
                        "valueTwo": 0,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            }
        )
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS})
    profile: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "syscalls": syscalls,
    }
    if arch in _ARCHES:
        profile["architectures"] = _ARCHES[arch]
    return profile
