# Unit tests of the static-file module (src/lib/files.c); included from
# tests/CMakeLists.txt after pkg_check_modules(CMOCKA ... IMPORTED_TARGET cmocka).
add_executable(test_files
  ${CMAKE_SOURCE_DIR}/tests/unit/test_files.c
  ${CMAKE_SOURCE_DIR}/src/lib/files.c)
target_include_directories(test_files PRIVATE ${CMAKE_SOURCE_DIR}/src/lib)
target_link_libraries(test_files PRIVATE PkgConfig::CMOCKA)
add_test(NAME unit_files COMMAND test_files)
set_tests_properties(unit_files PROPERTIES TIMEOUT 60)
