"""Import every domain's models so the metadata is complete (Alembic, create_all)."""

from service.audit import models as _audit  # noqa: F401
from service.auth import models as _auth  # noqa: F401
from service.core import jobs as _jobs  # noqa: F401  (JobRun)
from service.core.db import Base
from service.devices import models as _devices  # noqa: F401
from service.events import models as _events  # noqa: F401
from service.incidents import models as _incidents  # noqa: F401
from service.notify import models as _notify  # noqa: F401
from service.reports import models as _reports  # noqa: F401

metadata = Base.metadata
