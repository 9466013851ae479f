//! The job sets of the farm benchmark and the scheduler simulation: each
//! compile's work (ms on a host of speed 1) and its source size (bytes).

/// Where a job set's work and sizes come from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Profile {
    /// Pareto(alpha 1.6) work, capped at 8 x the mean; the source size
    /// follows the work loosely: 20 bytes per ms times a factor from 1/3
    /// to 3 (log-uniform).
    Pareto,
    /// Files drawn from a real build's table (`benches/data/NAME.txt`: each
    /// file's measured compile time and its source size), times scaled so
    /// that the table's mean is the set's mean.
    Project(&'static str),
}

/// The real builds measured, by name.
const PROJECTS: [(&str, &str); 3] = [
    ("openssl", include_str!("../data/openssl.txt")),
    ("libgit2", include_str!("../data/libgit2.txt")),
    ("protobuf", include_str!("../data/protobuf.txt")),
];

impl Profile {
    /// `pareto` or a project's name.
    pub fn parse(name: &str) -> Option<Profile> {
        if name == "pareto" {
            return Some(Profile::Pareto);
        }
        PROJECTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, _)| Profile::Project(n))
    }

    /// The profile `--profile NAME` names (Pareto when not given).
    pub fn from_args(args: &[String]) -> Profile {
        let Some(i) = args.iter().position(|a| a == "--profile") else {
            return Profile::Pareto;
        };
        args.get(i + 1)
            .and_then(|n| Profile::parse(n))
            .unwrap_or_else(|| {
                let mut names = vec!["pareto"];
                names.extend(PROJECTS.iter().map(|(n, _)| *n));
                panic!("--profile takes one of: {}", names.join(", "))
            })
    }

    /// What the job sets are, in a few words.
    pub fn describe(self) -> String {
        match self {
            Profile::Pareto => "Pareto work (alpha 1.6), size loosely follows work".into(),
            Profile::Project(name) => {
                format!("{} files of {name}'s build, measured", table(name).len())
            }
        }
    }

    /// `n` jobs of mean work `mean_ms`; `seed` 0 is the set BENCHMARKS.md
    /// reports first. Deterministic.
    pub fn job_set(self, n: usize, mean_ms: f64, seed: u64) -> Vec<(u64, u64)> {
        let mut rng = Rng::new(seed);
        match self {
            Profile::Pareto => pareto(n, mean_ms, &mut rng),
            Profile::Project(name) => sample(&table(name), n, mean_ms, &mut rng),
        }
    }
}

/// xorshift64: the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(0x9e3779b97f4a7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn pareto(n: usize, mean_ms: f64, rng: &mut Rng) -> Vec<(u64, u64)> {
    let alpha = 1.6f64;
    let xm = mean_ms * (alpha - 1.0) / alpha;
    (0..n)
        .map(|_| {
            let u = rng.next().max(1e-9);
            let w = (xm / u.powf(1.0 / alpha)).min(8.0 * mean_ms) as u64;
            let noise = 3f64.powf(2.0 * rng.next() - 1.0);
            (w, (w as f64 * 20.0 * noise) as u64)
        })
        .collect()
}

/// A project's table: (CPU ms, source bytes) per file.
fn table(name: &str) -> Vec<(f64, u64)> {
    let (_, text) = PROJECTS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a project");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let mut num = || f.next().and_then(|v| v.parse::<u64>().ok());
            match (num(), num()) {
                (Some(ms), Some(bytes)) => (ms as f64, bytes),
                _ => panic!("benches/data/{name}.txt: bad line {l:?}"),
            }
        })
        .collect()
}

/// `n` files drawn without repeats (with repeats only when the table is
/// smaller than `n`), in a random order.
fn sample(table: &[(f64, u64)], n: usize, mean_ms: f64, rng: &mut Rng) -> Vec<(u64, u64)> {
    let scale = mean_ms * table.len() as f64 / table.iter().map(|(ms, _)| ms).sum::<f64>();
    let mut idx: Vec<usize> = (0..table.len()).collect();
    (0..n)
        .map(|i| {
            let k = i % idx.len();
            if k == 0 && i > 0 {
                idx = (0..table.len()).collect();
            }
            let pick = k + (rng.next() * (idx.len() - k) as f64) as usize;
            idx.swap(k, pick);
            let (ms, bytes) = table[idx[k]];
            ((ms * scale).round() as u64, bytes)
        })
        .collect()
}
