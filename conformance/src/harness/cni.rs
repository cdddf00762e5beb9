//! Test CNI networks: a bridge + host-local + portmap conflist on a private bridge and subnet,
//! and the cleanup of everything CNI DEL leaves behind (the bridge, iptables chains, cache files).
//!
//! Subnets are `10.88.<x>.0/24`, leased across processes through files in
//! `/run/crius-test/net/` (so parallel tests never share a subnet or bridge).
//! Only loopback and pod addresses on these bridges are ever used by tests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

use super::util::{self, pid_alive, pid_start_time, random_hex, run, run_stdout, run_unchecked};

const LEASE_DIR: &str = "/run/crius-test/net";
const LOCK_FILE: &str = "/run/crius-test/net.lock";
const BASELINE_FILE: &str = "/run/crius-test/net/hostport-baseline";
const CNI_CACHE_RESULTS: &str = "/var/lib/cni/results";
/// The directory with the CNI plugin binaries on Debian.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
const SHARED_CHAINS: [&str; 3] = [
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];
const T: Duration = Duration::from_secs(30);

/// A conflist written for a test, with its leased subnet. Dropping it (or [`CniNetwork::cleanup`])
/// deletes its bridge, its iptables rules/chains and cache entries, and releases the subnet.
#[derive(Debug)]
pub struct CniNetwork {
    /// Network name in the conflist: `<requested name>-<8 hex>` (unique, so cleanup can find
    /// the iptables rules CNI tagged with it).
    pub name: String,
    /// Linux bridge: `crius-<8 hex>` (same hex as the name).
    pub bridge: String,
    /// e.g. `10.88.7.0/24`.
    pub subnet: String,
    /// e.g. `10.88.7.1` (the bridge's address).
    pub gateway: String,
    /// Path of the conflist file.
    pub conflist: PathBuf,
    lease: Option<PathBuf>,
    cleaned: bool,
}

impl CniNetwork {
    /// Writes `<conf_dir>/10-<name>.conflist` (bridge with host-local IPAM whose state lives in
    /// `ipam_dir`, then portmap). `subnet`: `None` leases a free `10.88.<x>.0/24`; `Some` uses the
    /// given /24 (leased too when it is a `10.88.<x>.0/24`).
    ///
    /// The conflist has no loopback plugin: loopback cannot be chained after bridge (it only
    /// accepts the `lo` interface); runtimes bring `lo` up themselves (containerd's CRI does) —
    /// or see [`write_loopback_conf`].
    pub fn create(
        conf_dir: &Path,
        ipam_dir: &Path,
        name: &str,
        subnet: Option<&str>,
    ) -> Result<CniNetwork> {
        let suffix = random_hex(8);
        let net_name = format!("{name}-{suffix}");
        let bridge = format!("crius-{suffix}");
        let (subnet, lease) = match subnet {
            None => {
                let (x, lease) = lease_subnet(&net_name, None)?;
                (format!("10.88.{x}.0/24"), Some(lease))
            }
            Some(s) => match parse_harness_subnet(s) {
                Some(x) => {
                    let (_, lease) = lease_subnet(&net_name, Some(x))?;
                    (s.to_string(), Some(lease))
                }
                None => (s.to_string(), None),
            },
        };
        let mut net = CniNetwork {
            name: net_name,
            bridge,
            gateway: gateway_of(&subnet)?,
            subnet,
            conflist: conf_dir.join(format!("10-{name}.conflist")),
            lease,
            cleaned: false,
        };
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": net.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": net.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": net.subnet, "gateway": net.gateway }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": ipam_dir.to_string_lossy(),
                    }
                },
                { "type": "portmap", "capabilities": { "portMappings": true } }
            ]
        });
        let res = (|| -> Result<()> {
            fs::create_dir_all(conf_dir)
                .with_context(|| format!("creating {}", conf_dir.display()))?;
            fs::create_dir_all(ipam_dir)
                .with_context(|| format!("creating {}", ipam_dir.display()))?;
            let body = serde_json::to_vec_pretty(&conf).context("serializing conflist")?;
            write_atomic(&net.conflist, &body)
        })();
        if let Err(e) = res {
            let _ = net.cleanup();
            return Err(e);
        }
        Ok(net)
    }

    /// Removes what CNI DEL leaves behind. Idempotent; runs every step even when one fails.
    pub fn cleanup(&mut self) -> Result<()> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut errors = Vec::new();
        if let Err(e) = cleanup_iptables_for(&self.name) {
            errors.push(format!("iptables: {e:#}"));
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            if let Err(e) = run(Command::new("ip").args(["link", "del", &self.bridge]), T) {
                errors.push(format!("deleting bridge {}: {e:#}", self.bridge));
            }
        }
        if let Ok(rd) = fs::read_dir(CNI_CACHE_RESULTS) {
            let prefix = format!("{}-", self.name);
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        if let Some(lease) = self.lease.take() {
            if let Err(e) = release_subnet(&lease) {
                errors.push(format!("releasing subnet lease: {e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("cleaning CNI network {}: {}", self.name, errors.join("; "))
        }
    }
}

impl Drop for CniNetwork {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("harness: {e:#}");
        }
    }
}

/// Writes `<conf_dir>/99-loopback.conf` (a plain loopback network, the classic layout).
/// containerd's CRI loads only the first file (max_conf_num = 1), so it ignores this one.
pub fn write_loopback_conf(conf_dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(conf_dir).with_context(|| format!("creating {}", conf_dir.display()))?;
    let p = conf_dir.join("99-loopback.conf");
    write_atomic(
        &p,
        br#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#,
    )?;
    Ok(p)
}

pub(crate) fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", random_hex(6)));
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(body)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn parse_harness_subnet(s: &str) -> Option<u8> {
    let x = s.strip_prefix("10.88.")?.strip_suffix(".0/24")?;
    x.parse::<u8>().ok().filter(|x| (1..=254).contains(x))
}

fn gateway_of(subnet: &str) -> Result<String> {
    let (addr, _) = subnet
        .split_once('/')
        .with_context(|| format!("subnet {subnet} is not CIDR"))?;
    let mut octets: Vec<u8> = addr
        .split('.')
        .map(|o| o.parse::<u8>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("subnet {subnet} is not IPv4"))?;
    if octets.len() != 4 {
        bail!("subnet {subnet} is not IPv4");
    }
    octets[3] = octets[3].saturating_add(1);
    Ok(octets
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

// ------------------------------------------------------------------ subnet leases

fn lock() -> Result<Flock<fs::File>> {
    fs::create_dir_all(LEASE_DIR).with_context(|| format!("creating {LEASE_DIR}"))?;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("flock {LOCK_FILE}"))
}

/// Lease files of live owners (stale ones, whose process is gone, are removed).
fn live_leases() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(LEASE_DIR) else {
        return out;
    };
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with("10.88.") {
            continue;
        }
        let path = e.path();
        let body = fs::read_to_string(&path).unwrap_or_default();
        let mut it = body.split_whitespace();
        let pid = it.next().and_then(|p| p.parse::<u32>().ok());
        let start = it.next().and_then(|p| p.parse::<u64>().ok());
        let alive = match (pid, start) {
            (Some(pid), Some(start)) => pid_alive(pid) && pid_start_time(pid) == Some(start),
            _ => false,
        };
        if alive {
            out.push(path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    out
}

fn lease_subnet(net_name: &str, want: Option<u8>) -> Result<(u8, PathBuf)> {
    let _guard = lock()?;
    let live = live_leases();
    if live.is_empty() {
        // first harness network on this machine: remember whether the shared portmap chains
        // existed before us, so the last one out knows whether to remove them
        let pre = chain_exists("nat", SHARED_CHAINS[0]).unwrap_or(true);
        write_atomic(
            Path::new(BASELINE_FILE),
            if pre { b"preexisting" } else { b"absent" },
        )?;
    }
    let routes =
        run_stdout(Command::new("ip").args(["-4", "route", "show"]), T).unwrap_or_default();
    let me = std::process::id();
    let start = pid_start_time(me).unwrap_or(0);
    let candidates: Vec<u8> = match want {
        Some(x) => vec![x],
        None => {
            let off = rand::random::<u8>() % 254;
            (0..254u16)
                .map(|i| u8::try_from((u16::from(off) + i) % 254 + 1).unwrap_or(1))
                .collect()
        }
    };
    for x in candidates {
        let path = Path::new(LEASE_DIR).join(format!("10.88.{x}"));
        if live.contains(&path) || routes.contains(&format!("10.88.{x}.")) {
            continue;
        }
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(format!("{me} {start} {net_name}\n").as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok((x, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    match want {
        Some(x) => bail!("subnet 10.88.{x}.0/24 is in use"),
        None => bail!("no free 10.88.<x>.0/24 subnet for a test network"),
    }
}

fn release_subnet(lease: &Path) -> Result<()> {
    let _guard = lock()?;
    let _ = fs::remove_file(lease);
    if live_leases().is_empty() {
        let baseline = fs::read_to_string(BASELINE_FILE).unwrap_or_default();
        if baseline.trim() == "absent" {
            remove_shared_hostport_chains()?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ iptables (nft backend only)

fn iptables_save(table: &str) -> Result<String> {
    run_stdout(Command::new("iptables-save").args(["-t", table]), T)
}

fn chain_exists(table: &str, chain: &str) -> Result<bool> {
    let save = iptables_save(table)?;
    Ok(save.lines().any(|l| {
        l.strip_prefix(':')
            .and_then(|l| l.split_whitespace().next())
            == Some(chain)
    }))
}

fn rule_target(rule: &str) -> Option<&str> {
    let mut it = rule.split_whitespace();
    while let Some(w) = it.next() {
        if w == "-j" || w == "-g" {
            return it.next();
        }
    }
    None
}

/// Applies `lines` (iptables-restore syntax, without the table header) to `table` with
/// `--noflush`, all at once, falling back to one line at a time.
fn iptables_apply(table: &str, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let apply = |body: &[String]| -> Result<()> {
        let path = std::env::temp_dir().join(format!("crius-iptables-{}", random_hex(8)));
        let mut script = format!("*{table}\n");
        for l in body {
            script.push_str(l);
            script.push('\n');
        }
        script.push_str("COMMIT\n");
        fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        let res = run(
            Command::new("iptables-restore").arg("--noflush").arg(&path),
            T,
        );
        let _ = fs::remove_file(&path);
        res.map(|_| ())
    };
    if apply(lines).is_ok() {
        return Ok(());
    }
    let mut errors = Vec::new();
    for l in lines {
        if let Err(e) = apply(std::slice::from_ref(l)) {
            errors.push(format!("{l}: {e:#}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("iptables-restore -t {table}: {}", errors.join("; "))
    }
}

/// Deletes every rule whose comment names the network (portmap's `dnat name: "<net>" id: ...`,
/// bridge's masquerade rules) and the per-container `CNI-*` chains those rules jump to.
fn cleanup_iptables_for(net_name: &str) -> Result<()> {
    let mut errors = Vec::new();
    for table in ["nat", "filter"] {
        let save = match iptables_save(table) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        let mut lines = Vec::new();
        let mut chains = Vec::new();
        for rule in save
            .lines()
            .filter(|l| l.starts_with("-A ") && l.contains(net_name))
        {
            lines.push(format!("-D {}", &rule[3..]));
            if let Some(t) = rule_target(rule) {
                if t.starts_with("CNI-")
                    && !t.starts_with("CNI-HOSTPORT-")
                    && !chains.contains(&t.to_string())
                {
                    chains.push(t.to_string());
                }
            }
        }
        for c in &chains {
            lines.push(format!("-F {c}"));
            lines.push(format!("-X {c}"));
        }
        if let Err(e) = iptables_apply(table, &lines) {
            errors.push(format!("{e:#}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

/// Removes portmap's shared CNI-HOSTPORT-* chains (and the jumps to them) when no rule is left
/// in CNI-HOSTPORT-DNAT. Called by the last harness network when the chains did not exist
/// before the first one.
fn remove_shared_hostport_chains() -> Result<()> {
    let save = iptables_save("nat")?;
    if !save
        .lines()
        .any(|l| l.starts_with(&format!(":{} ", SHARED_CHAINS[0])))
    {
        return Ok(());
    }
    if save
        .lines()
        .any(|l| l.starts_with(&format!("-A {} ", SHARED_CHAINS[0])))
    {
        return Ok(()); // someone still maps host ports
    }
    let mut lines = Vec::new();
    for rule in save.lines().filter(|l| l.starts_with("-A ")) {
        let chain = rule[3..].split_whitespace().next().unwrap_or_default();
        if !SHARED_CHAINS.contains(&chain)
            && rule_target(rule).is_some_and(|t| SHARED_CHAINS.contains(&t))
        {
            lines.push(format!("-D {}", &rule[3..]));
        }
    }
    for c in SHARED_CHAINS {
        if save.lines().any(|l| l.starts_with(&format!(":{c} "))) {
            lines.push(format!("-F {c}"));
            lines.push(format!("-X {c}"));
        }
    }
    iptables_apply("nat", &lines)
}

/// Checks that the host can run the test networks (iptables is the nft variant).
pub fn check_host() -> Result<()> {
    let out = run_unchecked(Command::new("iptables").arg("--version"), T)?;
    let v = String::from_utf8_lossy(&out.stdout);
    if !v.contains("nf_tables") {
        bail!(
            "iptables is not iptables-nft ({}); the harness never uses iptables-legacy",
            v.trim()
        );
    }
    util::require_program("ip")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_helpers() {
        assert_eq!(parse_harness_subnet("10.88.7.0/24"), Some(7));
        assert_eq!(parse_harness_subnet("10.88.0.0/24"), None);
        assert_eq!(parse_harness_subnet("10.89.7.0/24"), None);
        assert_eq!(
            gateway_of("10.88.7.0/24").ok().as_deref(),
            Some("10.88.7.1")
        );
    }

    #[test]
    fn targets() {
        let r = r#"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"n-1\" id: \"abc\"" -m multiport --dports 80 -j CNI-DN-123"#;
        assert_eq!(rule_target(r), Some("CNI-DN-123"));
        assert_eq!(rule_target("-A X -p tcp"), None);
    }
}
