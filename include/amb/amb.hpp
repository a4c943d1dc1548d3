// amb umbrella header: includes every public header, in dependency order.
#pragma once

#include "amb/version.hpp"
#include "amb/error.hpp"
#include "amb/log.hpp"
#include "amb/address.hpp"
#include "amb/docker_links.hpp"
