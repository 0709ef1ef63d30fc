pub mod pve;
