// Compiled only to build the tests' shared precompiled header (see tests/CMakeLists.txt).
