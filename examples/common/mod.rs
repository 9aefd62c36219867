//! What the benchmark examples share: their flags and their `--help`.

/// The value after flag `name`, or `default`.
pub fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// Prints the `//!` lines that open `source` (an example's own text) as its help.
pub fn print_help(source: &str) {
    let doc: Vec<&str> = source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!"))
        .collect();
    println!("{}", doc.join("\n"));
}
