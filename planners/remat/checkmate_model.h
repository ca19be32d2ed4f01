// Checkmate's MILP (Jain et al., MLSys 2020) as a sparse model for CBC/CLP: the column layout,
// its construction from a graph and a budget, and the reading of a solution back into stages.
#pragma once

#include <CoinTypes.hpp>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "planners/remat/internal.h"

namespace vramsim {
namespace remat_internal {

// Checkmate's MILP: columns R(t,i) i<=t, S(t,i) i<t, U(t,k) k<=t, FREE(t,i,k) k<t with i an
// input of k or k itself. Memory is scaled so the budget is 1000 units, cost so the baseline is
// 1000 units.

struct Lp {
  int ncols = 0;
  std::vector<double> collb, colub, obj;
  std::vector<uint8_t> integer;
  std::vector<double> rowlb, rowub;
  std::vector<int> trip_row, trip_col;
  std::vector<double> trip_val;
  std::vector<int> r_off, s_off;  // R(t,i) = r_off[t] + i; S(t,i) = s_off[t] + i
  double cost_scale = 1;
  bool complete = true;  // false: BuildCheckmate stopped at its deadline (the model is partial)

  int AddCol(double lb, double ub, double c, bool is_int) {
    collb.push_back(lb);
    colub.push_back(ub);
    obj.push_back(c);
    integer.push_back(is_int ? 1 : 0);
    return ncols++;
  }
  int AddRow(double lb, double ub) {
    rowlb.push_back(lb);
    rowub.push_back(ub);
    return static_cast<int>(rowlb.size()) - 1;
  }
  void Add(int row, int col, double v) {
    trip_row.push_back(row);
    trip_col.push_back(col);
    trip_val.push_back(v);
  }
  int R(int t, int i) const { return r_off[t] + i; }
  int S(int t, int i) const { return s_off[t] + i; }

  // Column-major matrix for CBC/CLP.
  void Csc(std::vector<CoinBigIndex>* start, std::vector<int>* index,
           std::vector<double>* value) const {
    start->assign(ncols + 1, 0);
    for (int c : trip_col) ++(*start)[c + 1];
    for (int c = 0; c < ncols; ++c) (*start)[c + 1] += (*start)[c];
    std::vector<CoinBigIndex> fill(start->begin(), start->end() - 1);
    index->assign(trip_col.size(), 0);
    value->assign(trip_col.size(), 0);
    for (size_t e = 0; e < trip_col.size(); ++e) {
      CoinBigIndex p = fill[trip_col[e]]++;
      (*index)[p] = trip_row[e];
      (*value)[p] = trip_val[e];
    }
  }
};

// Nonzeros of the MILP without building it (for the size cap).
size_t CountNonzeros(const RematGraph& g);

// The model; stops (complete false) when `end` passes while it is built, checked every stage.
Lp BuildCheckmate(const RematGraph& g, uint64_t budget,
                  Clock::time_point end = Clock::time_point::max());

// S rounded at `threshold` (x: a solution of the model's columns).
std::vector<std::vector<uint8_t>> KeptFromColumns(const Lp& lp, int n, const double* x,
                                                  double threshold);

// The MILP's own schedule: R and S as CBC left them.
RematSchedule StagesFromColumns(const Lp& lp, int n, const double* x);

}  // namespace remat_internal
}  // namespace vramsim
