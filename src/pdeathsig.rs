//! The one place with `unsafe` (the crate denies it everywhere else): `exec --proxy`'s command gets
//! `PR_SET_PDEATHSIG`, so that if we are killed outright (SIGKILL, the OOM killer) it is killed too, instead of
//! going on sending the proxy's capability and its payloads to a port another local process may bind next
//! (issue 20). std has no safe way to run code between `fork` and `exec`: `CommandExt::pre_exec` is `unsafe`
//! because the closure runs in a forked child where only async-signal-safe calls are allowed; `prctl` and
//! `getppid` are plain system calls, and nothing here allocates. Alternatives weighed: `setpriv --pdeathsig`
//! (an extra program that may be missing, and one more process between us and the command) and polling from
//! the child (impossible: it is not our code).
#![allow(unsafe_code)]

/// Have `cmd` killed (SIGKILL) when the thread that spawns it dies; Linux only, a no-op elsewhere. Spawn from a
/// thread that lives as long as the process (the death signal follows the spawning thread).
pub fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: the closure only makes two async-signal-safe system calls and builds an io::Error from an
        // errno (no allocation), as `pre_exec` requires.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl: the signal will never come, so do not start.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}
