//! tally: count lines, words and bytes of text, and its most frequent words.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const USAGE: &str = "\
Usage: tally [OPTIONS] [FILE...]

Count lines, words and bytes of each FILE (standard input when there is none, or for -),
and the most frequent words of all of them.

Options:
  -l, --lines         print the line count
  -w, --words         print the word count
  -c, --bytes         print the byte count
  -t, --top N         print the N most frequent words instead of the counts
  -i, --ignore-case   fold words to lower case before counting them (with --top)
  -m, --min-length N  count only words of at least N characters (with --top)
  -h, --help          print this help and exit
  -V, --version       print the version and exit
";

#[derive(Default)]
struct Options {
    lines: bool,
    words: bool,
    bytes: bool,
    top: Option<usize>,
    ignore_case: bool,
    min_length: usize,
    files: Vec<String>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    lines: u64,
    words: u64,
    bytes: u64,
}

enum Parsed {
    Run(Options),
    Exit(&'static str),
}

fn parse_args() -> Result<Parsed, lexopt::Error> {
    use lexopt::prelude::*;
    let mut opts = Options::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('l') | Long("lines") => opts.lines = true,
            Short('w') | Long("words") => opts.words = true,
            Short('c') | Long("bytes") => opts.bytes = true,
            Short('i') | Long("ignore-case") => opts.ignore_case = true,
            Short('t') | Long("top") => opts.top = Some(parser.value()?.parse()?),
            Short('m') | Long("min-length") => opts.min_length = parser.value()?.parse()?,
            Short('h') | Long("help") => return Ok(Parsed::Exit(USAGE)),
            Short('V') | Long("version") => return Ok(Parsed::Exit("")),
            Value(file) => opts.files.push(file.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    if !(opts.lines || opts.words || opts.bytes) {
        opts.lines = true;
        opts.words = true;
        opts.bytes = true;
    }
    Ok(Parsed::Run(opts))
}

fn read_all(name: &str) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    if name == "-" {
        io::stdin().lock().read_to_end(&mut data)?;
    } else {
        File::open(name)?.read_to_end(&mut data)?;
    }
    Ok(data)
}

fn count(data: &[u8], opts: &Options, freq: &mut HashMap<Vec<u8>, u64>) -> Counts {
    let mut counts = Counts { bytes: data.len() as u64, ..Counts::default() };
    counts.lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    for word in data.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        counts.words += 1;
        if opts.top.is_some() {
            let word: Vec<u8> = word
                .iter()
                .filter(|b| b.is_ascii_alphanumeric() || **b == b'\'' || **b >= 0x80)
                .map(|b| if opts.ignore_case { b.to_ascii_lowercase() } else { *b })
                .collect();
            if !word.is_empty() && word.len() >= opts.min_length {
                *freq.entry(word).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn line(out: &mut impl Write, counts: Counts, opts: &Options, name: Option<&str>) -> io::Result<()> {
    let mut fields = Vec::new();
    if opts.lines {
        fields.push(counts.lines.to_string());
    }
    if opts.words {
        fields.push(counts.words.to_string());
    }
    if opts.bytes {
        fields.push(counts.bytes.to_string());
    }
    match name {
        Some(name) => writeln!(out, "{} {}", fields.join(" "), name),
        None => writeln!(out, "{}", fields.join(" ")),
    }
}

fn run(opts: Options) -> Result<bool, io::Error> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let files = if opts.files.is_empty() { vec!["-".to_string()] } else { opts.files.clone() };
    let mut freq = HashMap::new();
    let mut total = Counts::default();
    let mut ok = true;
    for name in &files {
        match read_all(name) {
            Ok(data) => {
                let counts = count(&data, &opts, &mut freq);
                total.lines += counts.lines;
                total.words += counts.words;
                total.bytes += counts.bytes;
                if opts.top.is_none() {
                    let label = if opts.files.is_empty() { None } else { Some(name.as_str()) };
                    line(&mut out, counts, &opts, label)?;
                }
            }
            Err(err) => {
                out.flush()?;
                let why = match err.kind() {
                    io::ErrorKind::NotFound => "No such file or directory".to_string(),
                    io::ErrorKind::PermissionDenied => "Permission denied".to_string(),
                    _ => err.to_string(),
                };
                eprintln!("tally: {name}: {why}");
                ok = false;
            }
        }
    }
    if let Some(n) = opts.top {
        let mut ranked: Vec<(Vec<u8>, u64)> = freq.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (word, times) in ranked.into_iter().take(n) {
            writeln!(out, "{times} {}", String::from_utf8_lossy(&word))?;
        }
    } else if files.len() > 1 {
        line(&mut out, total, &opts, Some("total"))?;
    }
    out.flush()?;
    Ok(ok)
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(Parsed::Exit("")) => {
            println!("tally {VERSION}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Exit(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(opts)) => match run(opts) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("tally: {err}");
                ExitCode::from(1)
            }
        },
        Err(err) => {
            eprintln!("tally: {err}\nTry 'tally --help' for more information.");
            ExitCode::from(2)
        }
    }
}
