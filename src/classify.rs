//! Which compiles go to the farm. Jobs that distcc would run locally anyway
//! never take a remote slot; they run the real compiler under a local one.

/// What to do with one compiler command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A single-source compile distcc can send to a farm host.
    Farm {
        /// The source file as written on the command line.
        source: String,
    },
    /// A job that must run on this machine, and why.
    Local {
        /// Why it cannot be distributed.
        reason: String,
    },
}

/// Options whose value is the next argument.
const TAKES_VALUE: &[&str] = &[
    "-o",
    "-x",
    "-I",
    "-D",
    "-U",
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "-imultilib",
    "-MF",
    "-MT",
    "-MQ",
    "-L",
    "-l",
    "-u",
    "-T",
    "-e",
    "-Xlinker",
    "-Xassembler",
    "-Xpreprocessor",
    "-Xclang",
    "-aux-info",
    "--param",
    "-arch",
    "-target",
    "-B",
    "-G",
    "-A",
    "-z",
    "--sysroot",
];

/// Languages (`-x`) distcc distributes.
const DISTRIBUTED_LANGS: &[&str] = &[
    "c",
    "c++",
    "objective-c",
    "objective-c++",
    "cpp-output",
    "c++-cpp-output",
    "objective-c-cpp-output",
    "objective-c++-cpp-output",
];

/// File extensions distcc treats as sources (`dcc_is_source`).
const SOURCE_EXTS: &[&str] = &[
    "c", "cc", "cpp", "cxx", "cp", "c++", "C", "i", "ii", "m", "mm", "mi", "mii", "M",
];

fn local(reason: impl Into<String>) -> Route {
    Route::Local {
        reason: reason.into(),
    }
}

fn is_source(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.ends_with('/') && SOURCE_EXTS.contains(&ext))
}

fn is_profiling(a: &str) -> bool {
    a.starts_with("-fprofile")
        || a.starts_with("-fauto-profile")
        || a.starts_with("-fcoverage")
        || a == "-ftest-coverage"
        || a == "--coverage"
        || a == "-fbranch-probabilities"
        || a == "-frepo"
        || a == "-pg"
}

/// Classifies the arguments that follow the compiler name.
pub(crate) fn classify(args: &[String]) -> Route {
    let mut compile = false;
    let mut lang_given = false;
    let mut sources: Vec<&str> = Vec::new();
    let mut iter = args.iter().map(String::as_str);
    while let Some(a) = iter.next() {
        match a {
            "-c" | "-S" => compile = true,
            "-o" => {
                // The guard form would consume the value only when it matched.
                let out = iter.next();
                if out == Some("-") {
                    return local("-o - (output to stdout)");
                }
            }
            "-x" => match iter.next() {
                Some(lang) if DISTRIBUTED_LANGS.contains(&lang) => lang_given = true,
                Some("none") => lang_given = false,
                Some(lang) => return local(format!("-x {lang} is not distributed")),
                None => return local("-x without a language"),
            },
            _ if TAKES_VALUE.contains(&a) => {
                iter.next();
            }
            _ => {
                if let Some(reason) = local_only(a) {
                    return local(reason);
                }
                if !a.starts_with('-') && (is_source(a) || lang_given) {
                    sources.push(a);
                }
            }
        }
    }
    if !compile {
        return local("no -c or -S (linking)");
    }
    route(&sources)
}

/// Why argument `a` alone keeps the compile on this machine, if it does.
fn local_only(a: &str) -> Option<String> {
    let machine = ["-march=native", "-mtune=native", "-mcpu=native"];
    Some(match a {
        "-E" => "-E (preprocess only)".into(),
        "-M" | "-MM" => format!("{a} writes dependencies only"),
        "-" => "source on stdin".into(),
        _ if machine.iter().any(|m| a.starts_with(m)) => {
            format!("{a} depends on this machine")
        }
        _ if is_profiling(a) => format!("{a} writes profiling files locally"),
        _ if a.starts_with("-specs=") => format!("{a} reads a local file"),
        _ if a.starts_with("-Wa,") && a.split(',').any(|p| p.starts_with("-a") || p == "--MD") => {
            format!("{a} writes assembler listings locally")
        }
        _ if a.starts_with('@') => format!("response file {a}"),
        _ => return None,
    })
}

/// Where a compile of `sources` goes.
fn route(sources: &[&str]) -> Route {
    match sources {
        [] => local("no source file"),
        [one] => {
            let name = one.rsplit('/').next().unwrap_or(one);
            if name.starts_with("conftest.") || name.starts_with("tmp.conftest.") {
                local("configure test (conftest)")
            } else {
                Route::Farm {
                    source: one.to_string(),
                }
            }
        }
        _ => local("more than one source file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(line: &str) -> Route {
        let args: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
        classify(&args)
    }

    /// Real command lines from make, CMake, autotools and libtool.
    const DISTRIBUTE: &[(&str, &str)] = &[
        ("cc -O2 -c -o foo.o foo.c", "foo.c"),
        ("cc -O2   -c -o src/main.o src/main.c", "src/main.c"),
        (
            "/usr/bin/cc -DFOO=1 -I/src/include -O3 -DNDEBUG -MD -MT CMakeFiles/app.dir/a.c.o \
             -MF CMakeFiles/app.dir/a.c.o.d -o CMakeFiles/app.dir/a.c.o -c /src/a.c",
            "/src/a.c",
        ),
        (
            "/usr/bin/c++ -I/src -std=gnu++17 -o CMakeFiles/x.dir/b.cpp.o -c /src/b.cpp",
            "/src/b.cpp",
        ),
        (
            "gcc -DHAVE_CONFIG_H -I. -I.. -g -O2 -MT foo.o -MD -MP -MF .deps/foo.Tpo -c -o foo.o foo.c",
            "foo.c",
        ),
        (
            "gcc -DHAVE_CONFIG_H -I. -g -O2 -MT libfoo_la-foo.lo -MD -MP -MF .deps/libfoo_la-foo.Tpo \
             -c foo.c  -fPIC -DPIC -o .libs/libfoo_la-foo.o",
            "foo.c",
        ),
        ("gcc -S -O2 x.c", "x.c"),
        ("g++ -c -x c++ weird.inc -o w.o", "weird.inc"),
        ("gcc -c -include config.h -I inc -D X a.c", "a.c"),
        (
            "clang -c -target x86_64-linux-gnu -march=x86-64-v3 k.c",
            "k.c",
        ),
        ("gcc -c -Wa,--noexecstack s.c", "s.c"),
        ("gcc -c -march=skylake v.c", "v.c"),
        ("gcc -c conf.c", "conf.c"),
    ];

    const LOCAL: &[&str] = &[
        "cc -o app main.o util.o -lm",
        "/usr/bin/cc -O3 -DNDEBUG CMakeFiles/app.dir/a.c.o -o app",
        "gcc -o conftest -g -O2 conftest.c",
        "gcc -c -g -O2 conftest.c",
        "gcc -E conftest.c",
        "gcc -E -dM - ",
        "gcc -M foo.c",
        "gcc -MM -c foo.c",
        "gcc -c -march=native foo.c",
        "gcc -c -mtune=native foo.c",
        "gcc -c -fprofile-arcs foo.c",
        "gcc -c --coverage foo.c",
        "gcc -c -ftest-coverage foo.c",
        "gcc -c -fprofile-generate foo.c",
        "gcc -c -pg foo.c",
        "gcc -c -x assembler-with-cpp start.S",
        "gcc -c start.S",
        "gcc -c a.c b.c",
        "gcc -c foo.c -o -",
        "gcc -c",
        "gcc -c @args.rsp",
        "gcc -c -Wa,-adhln=foo.lst foo.c",
        "gcc --version",
        "gcc -c -x c -",
    ];

    #[test]
    fn distributable_lines() {
        for (line, source) in DISTRIBUTE {
            assert_eq!(
                job(line),
                Route::Farm {
                    source: source.to_string()
                },
                "{line}"
            );
        }
    }

    #[test]
    fn local_lines() {
        for line in LOCAL {
            assert!(
                matches!(job(line), Route::Local { .. }),
                "{line} -> {:?}",
                job(line)
            );
        }
    }

    #[test]
    fn reasons_name_the_flag() {
        assert_eq!(
            job("gcc -c -march=native f.c"),
            local("-march=native depends on this machine")
        );
        assert_eq!(job("gcc a.o -o p"), local("no -c or -S (linking)"));
    }
}
