# Sourced by tests/run.sh, tests/demo.sh, tests/bench.sh: makes `cargo` available when running
# as root through sudo (rustup usually lives in the invoking user's home).
if ! command -v cargo >/dev/null; then
    for home in "$HOME" ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)"}; do
        if [[ -x "$home/.cargo/bin/cargo" ]]; then
            export PATH="$home/.cargo/bin:$PATH"
            if [[ -d "$home/.rustup" ]]; then export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}"; fi
            break
        fi
    done
fi
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install rustup (the toolchain is pinned in rust-toolchain.toml)" >&2
    exit 1
fi
