//! The `exoflow` command.

fn main() {
    println!("exoflow");
}
