fn main() -> std::process::ExitCode {
    tcpb::cli::main()
}
