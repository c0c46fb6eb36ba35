//! drover's Linux container runtimes. The process runtime runs a
//! container's command as a host process in its own PID, mount, IPC and UTS
//! namespaces, under cgroup v1 or v2 limits, through a detached shim that
//! outlives agent restarts. This is the only crate with `unsafe` (fork and
//! exec in the shim).

pub mod cgroups;
pub mod network;
pub mod oci;
pub mod process;
pub mod shim;
pub mod streams;
pub mod zygote;

/// Adds `vars` to `env`, a later variable replacing an earlier one of the
/// same name in place (a process sees one value per name: `getenv` returns
/// the first).
pub(crate) fn merge_env(env: &mut Vec<(String, String)>, vars: &[(String, String)]) {
    for (k, v) in vars {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn later_variables_replace_earlier_ones_in_place() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let mut env = vec![pair("PATH", "/bin"), pair("A", "1")];
        super::merge_env(&mut env, &[pair("B", "2"), pair("PATH", "/usr/bin")]);
        assert_eq!(
            env,
            vec![pair("PATH", "/usr/bin"), pair("A", "1"), pair("B", "2")]
        );
    }
}
