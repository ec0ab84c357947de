pub mod vcsim;
