<#
.SYNOPSIS
  Cài tác tử Canh Gác thành dịch vụ Windows CanhGacAgent / install the Canh Gác agent as the
  CanhGacAgent Windows service.

.DESCRIPTION
  Chạy trong PowerShell "Run as administrator". Script này:
    1. tạo %ProgramData%\CanhGac\Agent, chỉ SYSTEM và Administrators truy cập được (icacls, theo SID
       nên chạy được trên Windows tiếng Việt);
    2. chép cấu hình và mã truy cập vào đó;
    3. bật kiểm toán "File System" (auditpol, theo GUID của tiểu mục, không theo tên đã dịch);
    4. thêm quy tắc kiểm toán (SACL) cho Everyone — ReadData, WriteData, AppendData, Delete, kế thừa
       xuống thư mục con và tệp — trên mỗi thư mục được bảo vệ trong cấu hình;
    5. đăng ký và khởi động dịch vụ CanhGacAgent (LocalSystem, tự khởi động, tự chạy lại khi lỗi).

  Run in an elevated PowerShell. It makes %ProgramData%\CanhGac\Agent readable by SYSTEM and
  Administrators only, copies the configuration and token there, turns on "File System" object
  access auditing, adds SACL audit rules (Everyone: ReadData, WriteData, AppendData, Delete,
  inherited by subfolders and files) on every protected folder of the configuration, and installs
  and starts the CanhGacAgent service.

  CHƯA CHẠY TRÊN MÁY WINDOWS THẬT / NOT YET RUN ON A REAL WINDOWS PC: docs/agent.md says what has
  and has not been tried.

.EXAMPLE
  # Trước đó / beforehand (docs/agent.md):
  #   py -3.11 -m venv "C:\Program Files\CanhGac\Agent\venv"
  #   & "C:\Program Files\CanhGac\Agent\venv\Scripts\pip.exe" install --require-hashes -r requirements\agent.txt
  #   & "C:\Program Files\CanhGac\Agent\venv\Scripts\pip.exe" install --no-deps --no-build-isolation .\agent
  powershell -ExecutionPolicy Bypass -File install-agent.ps1 -ConfigFile .\agent.toml -TokenFile .\agent-token.txt
#>
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $ConfigFile,
    [string] $TokenFile,
    [string] $Venv = (Join-Path $env:ProgramFiles 'CanhGac\Agent\venv'),
    [string] $DataDir = (Join-Path $env:ProgramData 'CanhGac\Agent'),
    # Nhật ký Security mặc định 20 MB đầy rất nhanh khi kiểm toán việc đọc tệp.
    # The default 20 MB Security log fills fast once file reads are audited.
    [long] $SecurityLogMaxBytes = 268435456,
    [switch] $NoStart
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3

# Tên nhóm bị dịch trên Windows tiếng Việt; SID thì không. / Group names are translated; SIDs are not.
$SidSystem = 'S-1-5-18'
$SidAdministrators = 'S-1-5-32-544'
$SidEveryone = 'S-1-1-0'
# Tiểu mục "File System" của Object Access / the "File System" subcategory of Object Access.
$FileSystemSubcategory = '{0CCE921D-69AE-11D9-BED3-505054503030}'
$ServiceName = 'CanhGacAgent'

function Invoke-Native {
    # Lệnh ngoài không ném lỗi trong PowerShell 5.1: kiểm tra mã thoát. / Native commands do not
    # throw in PowerShell 5.1: check the exit code.
    param([string] $Program, [string[]] $Arguments)
    & $Program @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "$Program $($Arguments -join ' ') -> exit $LASTEXITCODE"
    }
}

function Set-PrivateAcl {
    # Chỉ SYSTEM và Administrators, không kế thừa từ thư mục cha; chủ sở hữu là Administrators.
    # SYSTEM and Administrators only, nothing inherited from the parent; owned by Administrators.
    param([string] $Path)
    Invoke-Native icacls.exe @($Path, '/inheritance:r', '/grant:r',
        "*${SidSystem}:(OI)(CI)F", "*${SidAdministrators}:(OI)(CI)F")
    Invoke-Native icacls.exe @($Path, '/setowner', "*$SidAdministrators", '/T', '/C')
}

# --- 0. Kiểm tra / checks ---------------------------------------------------------------------
$Exe = Join-Path $Venv 'Scripts\canhgac-agent.exe'
$Python = Join-Path $Venv 'Scripts\python.exe'
foreach ($needed in @($Exe, $Python, $ConfigFile)) {
    if (-not (Test-Path -LiteralPath $needed -PathType Leaf)) {
        throw "Không thấy / not found: $needed"
    }
}
if ($TokenFile -and -not (Test-Path -LiteralPath $TokenFile -PathType Leaf)) {
    throw "Không thấy / not found: $TokenFile"
}
if (-not $Venv.StartsWith($env:ProgramFiles, [System.StringComparison]::OrdinalIgnoreCase)) {
    # Mã mà người dùng sửa được là mã chạy dưới quyền SYSTEM. / Code a user can edit runs as SYSTEM.
    Write-Warning "Venv ngoài Program Files: hãy chắc chắn người dùng thường không ghi được / venv outside Program Files: make sure ordinary users cannot write it: $Venv"
}

# --- 1. Thư mục riêng / private folder --------------------------------------------------------
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
Set-PrivateAcl -Path $DataDir

# --- 2. Cấu hình và mã truy cập / configuration and token --------------------------------------
$InstalledConfig = Join-Path $DataDir 'agent.toml'
Copy-Item -LiteralPath $ConfigFile -Destination $InstalledConfig -Force
if ($TokenFile) {
    # Trong agent.toml: token_file = "agent-token.txt" (tương đối với thư mục của tệp cấu hình).
    # In agent.toml: token_file = "agent-token.txt" (relative to the configuration's folder).
    Copy-Item -LiteralPath $TokenFile -Destination (Join-Path $DataDir 'agent-token.txt') -Force
}
# Tệp vừa chép nhận lại đúng ACL của thư mục (bỏ ACL mang theo). / Copied files take the folder's ACL.
Invoke-Native icacls.exe @((Join-Path $DataDir '*'), '/reset', '/T', '/C')
Set-PrivateAcl -Path $DataDir

# Tác tử tự đọc cấu hình (đường dẫn tương đối, giá trị mặc định) và kiểm tra mã truy cập.
# The agent reads its own configuration (relative paths, defaults) and checks the token.
$ReadRoots = 'import json, sys; from pathlib import Path; ' +
    'from canhgac_agent.winservice import load_service_config; ' +
    'c = load_service_config(Path(sys.argv[1])); c.bearer_token(); ' +
    'print(json.dumps([str(r.path) for r in c.protected_roots]))'
# json.dumps chỉ in ASCII (\uXXXX): tên thư mục tiếng Việt không bị sai mã trang qua ống dẫn.
# json.dumps prints ASCII only (\uXXXX): Vietnamese folder names survive the pipe's code page.
$RootsJson = & $Python -c $ReadRoots $InstalledConfig
if ($LASTEXITCODE -ne 0) { throw "Cấu hình không hợp lệ / invalid configuration: $InstalledConfig" }
$ProtectedRoots = @($RootsJson | ConvertFrom-Json)
if ($ProtectedRoots.Count -eq 0) {
    Write-Warning 'Cấu hình không có protected_roots: không thư mục nào được kiểm toán / no protected_roots: nothing is audited'
}

# --- 3. Bật kiểm toán File System / turn on File System auditing --------------------------------
Invoke-Native auditpol.exe @('/set', "/subcategory:$FileSystemSubcategory", '/success:enable', '/failure:enable')
# Chính sách nhóm "Audit: Force audit policy subcategory settings" phải bật (mặc định đã bật), nếu
# không, chính sách kiểm toán kiểu cũ ghi đè tiểu mục. / "Force audit policy subcategory settings"
# must be enabled (the default), or legacy category policy overrides the subcategory.
$MaxSizeLine = & wevtutil.exe gl Security | Select-String -Pattern 'maxSize:\s*(\d+)' | Select-Object -First 1
if ($null -eq $MaxSizeLine) {
    Write-Warning 'Không đọc được kích thước nhật ký Security / cannot read the Security log size'
} elseif ([long]$MaxSizeLine.Matches[0].Groups[1].Value -lt $SecurityLogMaxBytes) {
    Invoke-Native wevtutil.exe @('sl', 'Security', "/ms:$SecurityLogMaxBytes")
}

# --- 4. Quy tắc kiểm toán trên thư mục được bảo vệ / SACLs on protected folders -------------------
$Everyone = New-Object System.Security.Principal.SecurityIdentifier($SidEveryone)
$Rights = [System.Security.AccessControl.FileSystemRights]'ReadData, WriteData, AppendData, Delete'
$Inherit = [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
$Propagate = [System.Security.AccessControl.PropagationFlags]::None
$AuditFlags = [System.Security.AccessControl.AuditFlags]'Success, Failure'
foreach ($Root in $ProtectedRoots) {
    if (-not (Test-Path -LiteralPath $Root -PathType Container)) {
        Write-Warning "Không thấy thư mục được bảo vệ / protected folder not found: $Root"
        continue
    }
    $Acl = Get-Acl -LiteralPath $Root -Audit
    $Rule = New-Object System.Security.AccessControl.FileSystemAuditRule(
        $Everyone, $Rights, $Inherit, $Propagate, $AuditFlags)
    $Acl.AddAuditRule($Rule)  # gộp với quy tắc trùng đã có / merges with an identical rule
    Set-Acl -LiteralPath $Root -AclObject $Acl
    Write-Host "SACL: $Root"
}

# --- 5. Dịch vụ / the service -------------------------------------------------------------------
$InstallArgs = @('install-service', '--config', $InstalledConfig)
if ($NoStart) { $InstallArgs += '--no-start' }
Invoke-Native $Exe $InstallArgs

Invoke-Native sc.exe @('qc', $ServiceName)
Invoke-Native sc.exe @('qfailure', $ServiceName)
Invoke-Native auditpol.exe @('/get', "/subcategory:$FileSystemSubcategory")
Write-Host "OK: $ServiceName — nhật ký / log: $(Join-Path $DataDir 'agent.log')"
