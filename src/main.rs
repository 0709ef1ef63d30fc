fn main() -> std::process::ExitCode {
    k3sx::app::main()
}
