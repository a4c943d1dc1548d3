# The programs of a default build (no -DAMB_TLS, as in the scratch images; here the static build's):
# an https:// etcd endpoint, from --etcd or ETCDCTL_ENDPOINTS, gives exactly one clear line and exit 2,
# and no OpenSSL is linked in.
# Run by ctest after the static build: cmake -DWORK_DIR=<static build dir> -P run_no_tls_test.cmake
cmake_minimum_required(VERSION 3.21)

function(expect program)
  set(bin ${WORK_DIR}/examples/${program})
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  set(want "${program}: https://127.0.0.1:2379: this build has no TLS support (configure with -DAMB_TLS=ON)\n")
  if(NOT rc EQUAL 2 OR NOT out STREQUAL want)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "${cmd}\nexit ${rc}, printed:\n${out}\nwanted exit 2 and:\n${want}")
  endif()
endfunction()

foreach(program docker-register dynamic-etcd-amb)
  set(bin ${WORK_DIR}/examples/${program})
  if(program STREQUAL "docker-register")
    set(args web1 80 web)
  else()
    set(args redis-A 6379)
  endif()
  expect(${program} env -i ${bin} --etcd https://127.0.0.1:2379 ${args})
  expect(${program} env -i ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 ${bin} ${args})
  file(STRINGS ${bin} openssl_strings REGEX "OpenSSL|SSL_CTX|libssl")
  if(openssl_strings)
    message(FATAL_ERROR "${program} of a default build holds OpenSSL code: ${openssl_strings}")
  endif()
  message(STATUS "${program}: no TLS support line, exit 2, no OpenSSL inside")
endforeach()
