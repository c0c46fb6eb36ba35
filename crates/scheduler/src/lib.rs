//! drover scheduler (being written).
