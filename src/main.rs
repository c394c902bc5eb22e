fn main() {
    println!("flow");
}
