pub mod segment;
pub mod session;
pub mod upstream;
pub mod wav;
